"""SPF parser (RFC 7208): every mechanism and modifier, qualifiers, CIDRs, macros, and errors."""

from __future__ import annotations

import pytest

from inboxcheck.dns.records import RecordSyntaxError
from inboxcheck.dns.records.spf import (
    Mechanism,
    MechanismKind,
    Modifier,
    Qualifier,
    is_spf_record,
    parse_spf,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1", True),
        ("v=spf1 -all", True),
        ("V=SPF1 -all", True),
        ("v=spf10 -all", False),
        ("v=spf1-all", False),
        ("spf1 -all", False),
        ("", False),
        ("v=DMARC1; p=none", False),
    ],
)
def test_is_spf_record(text: str, expected: bool) -> None:
    assert is_spf_record(text) is expected


def test_google_style_record() -> None:
    record = parse_spf("v=spf1 include:_spf.google.com ~all")
    include, all_ = record.mechanisms
    assert include.kind is MechanismKind.INCLUDE
    assert include.domain == "_spf.google.com"
    assert include.qualifier is Qualifier.PASS
    assert include.explicit_qualifier is False
    assert all_.kind is MechanismKind.ALL and all_.qualifier is Qualifier.SOFTFAIL
    assert record.all is all_
    assert record.redirect is None
    assert [t.text for t in record.lookup_terms()] == ["include:_spf.google.com"]


@pytest.mark.parametrize(
    ("term", "kind", "qualifier", "domain", "network", "cidr4", "cidr6"),
    [
        ("all", MechanismKind.ALL, Qualifier.PASS, None, None, None, None),
        ("-all", MechanismKind.ALL, Qualifier.FAIL, None, None, None, None),
        ("?all", MechanismKind.ALL, Qualifier.NEUTRAL, None, None, None, None),
        ("+all", MechanismKind.ALL, Qualifier.PASS, None, None, None, None),
        ("a", MechanismKind.A, Qualifier.PASS, None, None, None, None),
        ("a/24", MechanismKind.A, Qualifier.PASS, None, None, 24, None),
        ("a//64", MechanismKind.A, Qualifier.PASS, None, None, None, 64),
        ("a:mail.example.com/24//64", MechanismKind.A, Qualifier.PASS, "mail.example.com", None, 24, 64),
        ("-mx", MechanismKind.MX, Qualifier.FAIL, None, None, None, None),
        ("mx:example.com/30", MechanismKind.MX, Qualifier.PASS, "example.com", None, 30, None),
        ("MX:Example.COM", MechanismKind.MX, Qualifier.PASS, "Example.COM", None, None, None),
        ("ptr", MechanismKind.PTR, Qualifier.PASS, None, None, None, None),
        ("?ptr:example.org", MechanismKind.PTR, Qualifier.NEUTRAL, "example.org", None, None, None),
        ("ip4:192.0.2.1", MechanismKind.IP4, Qualifier.PASS, None, "192.0.2.1", None, None),
        ("~ip4:192.0.2.0/24", MechanismKind.IP4, Qualifier.SOFTFAIL, None, "192.0.2.0", 24, None),
        ("ip6:2001:db8::/32", MechanismKind.IP6, Qualifier.PASS, None, "2001:db8::", None, 32),
        ("ip6:::1", MechanismKind.IP6, Qualifier.PASS, None, "::1", None, None),
        ("exists:%{i}._spf.%{d}", MechanismKind.EXISTS, Qualifier.PASS, "%{i}._spf.%{d}", None, None, None),
        (
            "include:spf.example.net.",
            MechanismKind.INCLUDE,
            Qualifier.PASS,
            "spf.example.net.",
            None,
            None,
            None,
        ),
    ],
)
def test_mechanisms(
    term: str,
    kind: MechanismKind,
    qualifier: Qualifier,
    domain: str | None,
    network: str | None,
    cidr4: int | None,
    cidr6: int | None,
) -> None:
    (mechanism,) = parse_spf(f"v=spf1 {term}").terms
    assert isinstance(mechanism, Mechanism)
    assert (mechanism.kind, mechanism.qualifier, mechanism.domain, mechanism.network) == (
        kind,
        qualifier,
        domain,
        network,
    )
    assert (mechanism.cidr4, mechanism.cidr6) == (cidr4, cidr6)
    assert mechanism.text == term
    assert mechanism.position == len("v=spf1 ")


@pytest.mark.parametrize(
    ("kind", "costs"),
    [
        ("include:a.example", True),
        ("a", True),
        ("mx", True),
        ("ptr", True),
        ("exists:a.example", True),
        ("ip4:192.0.2.1", False),
        ("ip6:::1", False),
        ("all", False),
    ],
)
def test_lookup_cost(kind: str, costs: bool) -> None:
    (mechanism,) = parse_spf(f"v=spf1 {kind}").mechanisms
    assert mechanism.costs_lookup is costs


def test_modifiers() -> None:
    record = parse_spf("v=spf1 mx redirect=_spf.example.com exp=explain.%{d} unknown-mod=anything")
    assert [m.name for m in record.modifiers] == ["redirect", "exp", "unknown-mod"]
    assert record.redirect is not None and record.redirect.value == "_spf.example.com"
    assert record.explanation is not None and record.explanation.has_macro
    assert record.effective_redirect is record.redirect
    assert [t.text for t in record.lookup_terms()] == ["mx", "redirect=_spf.example.com"]
    assert isinstance(record.terms[1], Modifier) and record.terms[1].costs_lookup


def test_redirect_ignored_when_all_present() -> None:
    record = parse_spf("v=spf1 -all redirect=other.example.com")
    assert record.redirect is not None
    assert record.effective_redirect is None
    assert record.lookup_terms() == ()


def test_extra_spaces_and_positions() -> None:
    record = parse_spf("v=spf1  mx   -all ")
    assert [(t.text, t.position) for t in record.terms] == [("mx", 8), ("-all", 13)]


def test_macros_accepted() -> None:
    record = parse_spf(
        "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} include:%{d2}.example.com exp=%%%_%-x.%{d} note=%%%_%- -all"
    )
    assert len(record.mechanisms) == 3


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("spf1 -all", 0, "v=spf1"),
        ("v=spf1 inclde:foo.com", 7, "unknown mechanism"),
        ("v=spf1 ip4:192.0.2.300 ~all", 11, "not a valid IPv4"),
        ("v=spf1 ip4:192.0.2.0/33", 20, "prefix length"),
        ("v=spf1 ip4:192.0.2.0/024", 20, "prefix length"),
        ("v=spf1 ip6:2001:db8::/129", 21, "prefix length"),
        ("v=spf1 ip6:nothex", 11, "not a valid IPv6"),
        ("v=spf1 ip4", 10, "needs an address"),
        ("v=spf1 include", 14, "needs a domain"),
        ("v=spf1 include:", 14, "needs a domain"),
        ("v=spf1 exists", 13, "needs a domain"),
        ("v=spf1 include:localhost", 15, "fully qualified"),
        ("v=spf1 include:foo..com", 19, "empty or over-long label"),
        ("v=spf1 include:example.123", 23, "top-level label"),
        ("v=spf1 a:foo.com/33", 16, "longer than 32"),
        ("v=spf1 a:foo.com//129", 16, "longer than 128"),
        ("v=spf1 mx:a.example/24/", 19, "malformed prefix"),
        ("v=spf1 a.example", 8, "must be followed"),
        ("v=spf1 all:foo", 10, "takes no argument"),
        ("v=spf1 -all redirect=a.example redirect=b.example", 31, "more than once"),
        ("v=spf1 exp=a.example exp=b.example", 21, "more than once"),
        ("v=spf1 redirect=", 16, "needs a domain"),
        ("v=spf1 exists:%{x}.example.com", 14, "letters"),
        ("v=spf1 exists:%{d.example.com", 14, "never closed"),
        ("v=spf1 exists:%x.example.com", 14, "'%'"),
        ("v=spf1 exists:%{d3q}.example.com", 14, "transformer"),
        ("v=spf1 mx\t-all", 9, "character"),
        ("v=spf1 ip4:192.0.2.1 é", 21, "character"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, position: int, words: str) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_spf(text)
    error = caught.value
    assert error.position == position, error
    assert words in error.message
    assert error.record == text
    assert error.pointer().splitlines()[1] == " " * position + "^"
    assert isinstance(error, ValueError)


def test_error_message_is_a_sentence_with_position() -> None:
    with pytest.raises(RecordSyntaxError, match=r"at character 12\)$"):
        parse_spf("v=spf1 ip4:1.2.3 -all")
