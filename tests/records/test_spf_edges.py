"""SPF parser edges (issue 24's mutation survivors): the ends of valid ranges, every error path with
its exact message and position, macro validation past the first character, exp=, has_macro."""

from __future__ import annotations

import pytest

from inboxcheck.dns.records import RecordSyntaxError
from inboxcheck.dns.records.spf import Mechanism, MechanismKind, Modifier, Qualifier, parse_spf

LABEL_63 = "a" * 63
LABEL_64 = "a" * 64


def only_term(text: str) -> Mechanism | Modifier:
    (term,) = parse_spf(text).terms
    return term


def only_mechanism(text: str) -> Mechanism:
    term = only_term(text)
    assert isinstance(term, Mechanism)
    return term


# --- the ends of valid ranges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "network", "cidr4", "cidr6"),
    [
        ("ip4:192.0.2.1/32", "192.0.2.1", 32, None),
        ("ip4:192.0.2.0/0", "192.0.2.0", 0, None),
        ("ip4:192.0.2.0/9", "192.0.2.0", 9, None),
        ("ip6:2001:db8::1/128", "2001:db8::1", None, 128),
        ("ip6:::/0", "::", None, 0),
        ("ip6:2001:db8::/100", "2001:db8::", None, 100),
    ],
)
def test_ip_prefix_lengths_at_the_ends_of_their_range(
    term: str, network: str, cidr4: int | None, cidr6: int | None
) -> None:
    mechanism = only_mechanism(f"v=spf1 {term}")
    assert (mechanism.network, mechanism.cidr4, mechanism.cidr6) == (network, cidr4, cidr6)
    assert mechanism.domain is None


@pytest.mark.parametrize(
    ("term", "domain", "cidr4", "cidr6"),
    [
        ("a/32", None, 32, None),
        ("a/0", None, 0, None),
        ("a//128", None, None, 128),
        ("a//0", None, None, 0),
        ("mx/32//128", None, 32, 128),
        ("a:mail.example.com/32//128", "mail.example.com", 32, 128),
        ("a:host/one.example.com", "host/one.example.com", None, None),  # a '/' inside the name
        ("mx:%{d}/24", "%{d}", 24, None),
        ("a:x.host/one.example.com", "x.host/one.example.com", None, None),  # '/' between the dots
        ("a:x.b/.com", "x.b/.com", None, None),  # '/' just before the last dot
        ("a:x.%{d/}", "x.%{d/}", None, None),  # '/' as a macro delimiter in the last label
    ],
)
def test_a_and_mx_prefix_lengths_at_the_ends_of_their_range(
    term: str, domain: str | None, cidr4: int | None, cidr6: int | None
) -> None:
    mechanism = only_mechanism(f"v=spf1 {term}")
    assert (mechanism.domain, mechanism.cidr4, mechanism.cidr6) == (domain, cidr4, cidr6)


@pytest.mark.parametrize(
    "domain",
    [
        f"{LABEL_63}.example",
        f"mail.{LABEL_63}.example",
        f"mail.example.{'c' * 63}",
        f"{LABEL_63}.example.",
        "a.b",
        "x.example.c0m",
        "x.example.x-y",
    ],
)
def test_labels_up_to_63_characters_are_accepted(domain: str) -> None:
    assert only_mechanism(f"v=spf1 include:{domain}").domain == domain


@pytest.mark.parametrize("term", ["+all", "-all", "~all", "?all"])
def test_an_explicit_qualifier_is_recorded(term: str) -> None:
    mechanism = only_mechanism(f"v=spf1 {term}")
    assert mechanism.explicit_qualifier is True
    assert mechanism.qualifier is Qualifier(term[0])


def test_an_implicit_qualifier_is_pass_and_not_explicit() -> None:
    mechanism = only_mechanism("v=spf1 ip4:192.0.2.1")
    assert mechanism.qualifier is Qualifier.PASS
    assert mechanism.explicit_qualifier is False


@pytest.mark.parametrize(
    ("term", "kind"),
    [
        ("-include:a.example", MechanismKind.INCLUDE),
        ("~exists:a.example", MechanismKind.EXISTS),
        ("?ptr:a.example", MechanismKind.PTR),
        ("-ptr", MechanismKind.PTR),
        ("+a:a.example/24", MechanismKind.A),
        ("-mx", MechanismKind.MX),
        ("~ip4:192.0.2.1", MechanismKind.IP4),
        ("?ip6:::1", MechanismKind.IP6),
    ],
)
def test_every_mechanism_keeps_its_explicit_qualifier(term: str, kind: MechanismKind) -> None:
    mechanism = only_mechanism(f"v=spf1 {term}")
    assert mechanism.kind is kind
    assert mechanism.qualifier is Qualifier(term[0])
    assert mechanism.explicit_qualifier is True
    assert mechanism.text == term


def test_the_record_keeps_its_text() -> None:
    text = "v=spf1  a  -all"
    assert parse_spf(text).text == text


def test_mechanism_and_modifier_names_are_case_insensitive() -> None:
    record = parse_spf("v=spf1 INCLUDE:a.example Ip4:192.0.2.1 REDIRECT=b.example EXP=c.example -ALL")
    assert [m.kind for m in record.mechanisms] == [
        MechanismKind.INCLUDE,
        MechanismKind.IP4,
        MechanismKind.ALL,
    ]
    assert [m.name for m in record.modifiers] == ["redirect", "exp"]
    assert record.redirect is not None and record.redirect.value == "b.example"
    assert record.explanation is not None and record.explanation.value == "c.example"


def test_terms_keep_their_positions_after_qualifiers_and_modifiers() -> None:
    record = parse_spf("v=spf1 -a:x.example/24 redirect=r.example exp=e.example")
    assert [(t.text, t.position) for t in record.terms] == [
        ("-a:x.example/24", 7),
        ("redirect=r.example", 23),
        ("exp=e.example", 42),
    ]


# --- has_macro and exp= -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "has_macro"),
    [
        ("include:%{d}.example.com", True),
        ("exists:%{i}._spf.example.com", True),
        ("a:x.%{d}", True),
        ("include:example.com", False),
        ("a", False),  # no domain at all
        ("ip4:192.0.2.1", False),
        ("all", False),
    ],
)
def test_mechanism_has_macro(term: str, has_macro: bool) -> None:
    assert only_mechanism(f"v=spf1 {term}").has_macro is has_macro


@pytest.mark.parametrize(
    ("term", "has_macro"),
    [("exp=%{d}.explain.example", True), ("exp=explain.example", False), ("x-note=100%%", True)],
)
def test_modifier_has_macro(term: str, has_macro: bool) -> None:
    modifier = only_term(f"v=spf1 {term}")
    assert isinstance(modifier, Modifier)
    assert modifier.has_macro is has_macro


def test_exp_is_the_explanation_and_costs_no_lookup() -> None:
    record = parse_spf("v=spf1 -all exp=explain._spf.%{d}")
    explanation = record.explanation
    assert explanation is not None
    assert (explanation.name, explanation.value, explanation.position) == ("exp", "explain._spf.%{d}", 12)
    assert explanation.costs_lookup is False
    assert record.redirect is None
    assert record.lookup_terms() == ()


def test_an_unknown_modifier_takes_any_macro_string() -> None:
    modifier = only_term("v=spf1 x-note=%{c}%{r}%{t}:%%-%_%-")
    assert isinstance(modifier, Modifier)
    assert (modifier.name, modifier.value) == ("x-note", "%{c}%{r}%{t}:%%-%_%-")


@pytest.mark.parametrize(
    "domain",
    [
        "%{ir}.%{l1r+-}._spf.%{d}",
        "x.%{d2}.example.com",
        "x.%{o.}.example",
        "%{S}.%{V}.%{H}",
        "x.%{dR}.%{d2R_=}.example",  # "r" is case-insensitive (RFC 7208 12: ABNF strings)
        "a.%%{c}.example",
        # a label of macros may be longer than 63 characters before expansion, or look empty
        "%{i}" * 17 + ".example.com",
        "%{d}..example",
    ],
)
def test_valid_macros_after_the_first_character(domain: str) -> None:
    assert only_mechanism(f"v=spf1 exists:{domain}").domain == domain


# --- every error path: exact message and position -----------------------------------------------------

TOO_LONG_UNKNOWN = "z" * 50
NOT_IPV4 = "9" * 70
NOT_IPV6 = "f" * 70
UNKNOWN_MECHANISM = (
    "; SPF knows all, include, a, mx, ptr, ip4, ip6, exists and the modifiers redirect= and exp="
)
PERCENT = "a '%' must start a macro such as %{d}, or be written %% for a literal percent sign"
LETTERS = "a macro must start with one of the letters s l o d i p h c r t v"
NEVER_CLOSED = "a macro '%{' is never closed with '}'"
TOP_LABEL = "does not end in a valid top-level label"
EMPTY_LABEL = "has an empty or over-long label"
EXPLANATION_ONLY = "is only allowed in explanation strings (RFC 7208 7.3: c, r and t)"
TRANSFORMER = "has an invalid transformer or delimiter"
CHARACTER = "which SPF does not allow (only printable ASCII and single spaces between terms)"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("v=spf1-all", 0, "the record does not start with 'v=spf1' followed by a space"),
        ("v=spf1 mx\x7f", 9, f"the record contains the character '\\x7f', {CHARACTER}"),
        ("v=spf1 mx\x1f", 9, f"the record contains the character '\\x1f', {CHARACTER}"),
        ("v=spf1 Xall", 7, f"unknown mechanism 'Xall'{UNKNOWN_MECHANISM}"),
        (f"v=spf1 -{TOO_LONG_UNKNOWN}", 7, f"unknown mechanism '{'z' * 40}'{UNKNOWN_MECHANISM}"),
        ("v=spf1 -all:x", 11, "'all' takes no argument"),
        ("v=spf1 -include/foo.example", 15, "'include' needs a domain, as in include:example.com"),
        ("v=spf1 exists/a.example", 13, "'exists' needs a domain, as in exists:example.com"),
        ("v=spf1 ~exists:", 14, "'exists' needs a domain, as in exists:example.com"),
        ("v=spf1 ptr/a.example", 10, "'ptr' must be followed by ':domain' or nothing"),
        ("v=spf1 -ptr:", 11, "'ptr' must be followed by ':domain' or nothing"),
        ("v=spf1 a:", 8, "'a' must be followed by ':domain' or nothing"),
        ("v=spf1 -mx:", 10, "'mx' must be followed by ':domain' or nothing"),
        ("v=spf1 a.example", 8, "'a' must be followed by ':domain', '/prefix' or nothing"),
        ("v=spf1 mx/024", 9, "'mx' must be followed by ':domain', '/prefix' or nothing"),
        ("v=spf1 a/33", 8, "IPv4 prefix /33 is longer than 32"),
        ("v=spf1 a//129", 8, "IPv6 prefix //129 is longer than 128"),
        ("v=spf1 -a:foo.example/33", 21, "IPv4 prefix /33 is longer than 32"),
        ("v=spf1 mx:foo.example/24//129", 24, "IPv6 prefix //129 is longer than 128"),
        ("v=spf1 mx:a.example/2x", 19, "'mx' has a malformed prefix length"),
        ("v=spf1 a:host/x.example/2x", 23, "'a' has a malformed prefix length"),
        ("v=spf1 a:x.example./x", 19, "'a' has a malformed prefix length"),
        ("v=spf1 -a:example.com/24/", 21, "'a' has a malformed prefix length"),
        ("v=spf1 ip4/24", 10, "'ip4' needs an address, as in ip4:192.0.2.0/24"),
        ("v=spf1 ip4:", 10, "'ip4' needs an address, as in ip4:192.0.2.0/24"),
        ("v=spf1 ip6", 10, "'ip6' needs an address, as in ip6:2001:db8::/32"),
        ("v=spf1 -ip6:", 11, "'ip6' needs an address, as in ip6:2001:db8::/32"),
        (f"v=spf1 ip4:{NOT_IPV4}", 11, f"'{'9' * 60}' is not a valid IPv4 address"),
        (f"v=spf1 ip6:{NOT_IPV6}", 11, f"'{'f' * 60}' is not a valid IPv6 address"),
        ("v=spf1 ip4:192.0.2.1/", 20, "'/' is not a prefix length between 0 and 32"),
        ("v=spf1 ip4:192.0.2.0/33", 20, "'/33' is not a prefix length between 0 and 32"),
        ("v=spf1 ip4:192.0.2.0/12345678901234", 20, "'/1234567890' is not a prefix length between 0 and 32"),
        ("v=spf1 ip6:2001:db8::/0129", 21, "'/0129' is not a prefix length between 0 and 128"),
        ("v=spf1 ip6:2001:db8::/129", 21, "'/129' is not a prefix length between 0 and 128"),
        ("v=spf1 redirect=", 16, "the redirect modifier needs a domain"),
        ("v=spf1 exp=", 11, "the exp modifier needs a domain"),
        ("v=spf1 exp=foo", 11, "the exp modifier target 'foo' is not a fully qualified domain name"),
        ("v=spf1 redirect=a..b", 18, f"the redirect modifier target 'a..b' {EMPTY_LABEL}"),
        (
            "v=spf1 exp=%{c}.example.com",
            11,
            f"the macro %{{c}} in the exp modifier {EXPLANATION_ONLY}",
        ),
        (
            "v=spf1 redirect=x.%{r}.example.com",
            18,
            f"the macro %{{r}} in the redirect modifier {EXPLANATION_ONLY}",
        ),
        (
            "v=spf1 include:a.%{t}.example.com",
            17,
            f"the macro %{{t}} in 'include' {EXPLANATION_ONLY}",
        ),
        (
            "v=spf1 -all redirect=a.example REDIRECT=b.example",
            31,
            "the modifier 'redirect' appears more than once",
        ),
        ("v=spf1 exp=a.example -all EXP=b.example", 26, "the modifier 'exp' appears more than once"),
        ("v=spf1 exists:x.%{ir}.%{x}.example.com", 22, LETTERS),
        ("v=spf1 exists:x.%{d}.%y.example", 21, PERCENT),
        ("v=spf1 exists:x.%{d}.%{d.example", 21, NEVER_CLOSED),
        ("v=spf1 include:%{d", 15, NEVER_CLOSED),
        ("v=spf1 exists:ab%{d3q}.example", 16, f"the macro %{{d3q}} {TRANSFORMER}"),
        ("v=spf1 exists:x.%{d2r.}.%{d1rr}.example", 24, f"the macro %{{d1rr}} {TRANSFORMER}"),
        ("v=spf1 x-note=ab%x", 16, PERCENT),
        ("v=spf1 x-note=ab%{}", 16, LETTERS),
        ("v=spf1 x-note=%%ab%", 18, PERCENT),
        ("v=spf1 x-note=a%x", 15, PERCENT),
        ("v=spf1 x-note=%%%x", 16, PERCENT),
        ("v=spf1 x-note=%{d}%x", 18, PERCENT),
        ("v=spf1 exists:x.%{dq}.example", 16, f"the macro %{{dq}} {TRANSFORMER}"),
        ("v=spf1 include:%{d}.example.123", 28, f"'include' target '%{{d}}.example.123' {TOP_LABEL}"),
        (
            f"v=spf1 include:{'a' * 60}.example.123",
            84,
            f"'include' target '{'a' * 60}' {TOP_LABEL}",
        ),
        ("v=spf1 include:localhost", 15, "'include' target 'localhost' is not a fully qualified domain name"),
        (
            f"v=spf1 include:{'b' * 70}",
            15,
            f"'include' target '{'b' * 60}' is not a fully qualified domain name",
        ),
        (
            f"v=spf1 include:{LABEL_64}.example",
            15,
            f"'include' target '{'a' * 60}' {EMPTY_LABEL}",
        ),
        (
            f"v=spf1 include:foo.{LABEL_64}.example",
            19,
            f"'include' target 'foo.{'a' * 56}' {EMPTY_LABEL}",
        ),
        ("v=spf1 include:foo.bar..example", 23, f"'include' target 'foo.bar..example' {EMPTY_LABEL}"),
        ("v=spf1 include:a.example..", 25, f"'include' target 'a.example..' {EMPTY_LABEL}"),
        ("v=spf1 include:a.example.123", 25, f"'include' target 'a.example.123' {TOP_LABEL}"),
        ("v=spf1 include:a.-x", 17, f"'include' target 'a.-x' {TOP_LABEL}"),
        ("v=spf1 ptr:a.x-", 13, f"'ptr' target 'a.x-' {TOP_LABEL}"),
    ],
)
def test_every_error_has_its_exact_message_and_position(text: str, position: int, message: str) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_spf(text)
    assert (caught.value.message, caught.value.position) == (message, position)
    assert caught.value.record == text
