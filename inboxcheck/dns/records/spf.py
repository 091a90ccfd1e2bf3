"""SPF records (RFC 7208): terms, mechanisms with their qualifiers, modifiers, syntax errors.

:func:`parse_spf` checks the record against the ABNF of RFC 7208 section 12 and returns an
:class:`SpfRecord`, or raises :class:`RecordSyntaxError` with the position of the first error. Macros
(section 7) are accepted and validated but not expanded: expanding them needs the connecting client's
address, which a preflight does not have.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from inboxcheck.dns.records._common import RecordSyntaxError

__all__ = [
    "LOOKUP_LIMIT",
    "VOID_LOOKUP_LIMIT",
    "Mechanism",
    "MechanismKind",
    "Modifier",
    "Qualifier",
    "SpfRecord",
    "is_spf_record",
    "parse_spf",
]

# RFC 7208 4.6.4: at most 10 terms that cause DNS lookups, and (SHOULD) at most 2 void lookups.
LOOKUP_LIMIT: Final = 10
VOID_LOOKUP_LIMIT: Final = 2
# RFC 7208 4.6.4: an "mx" mechanism or a "ptr" evaluation must not look at more than 10 names.
MX_NAMES_LIMIT: Final = 10


class Qualifier(StrEnum):
    """The result a matching mechanism gives (RFC 7208 4.6.2)."""

    PASS = "+"
    FAIL = "-"
    SOFTFAIL = "~"
    NEUTRAL = "?"


class MechanismKind(StrEnum):
    ALL = "all"
    INCLUDE = "include"
    A = "a"
    MX = "mx"
    PTR = "ptr"
    IP4 = "ip4"
    IP6 = "ip6"
    EXISTS = "exists"


_LOOKUP_KINDS: Final = frozenset(
    {MechanismKind.INCLUDE, MechanismKind.A, MechanismKind.MX, MechanismKind.PTR, MechanismKind.EXISTS}
)


@dataclass(frozen=True)
class Mechanism:
    """One directive: a qualifier and a mechanism, with its target and CIDR lengths if any."""

    kind: MechanismKind
    qualifier: Qualifier
    text: str
    position: int
    domain: str | None = None  # domain-spec of include/a/mx/ptr/exists, None for "the current domain"
    network: str | None = None  # ip4/ip6 address
    cidr4: int | None = None
    cidr6: int | None = None
    explicit_qualifier: bool = False

    @property
    def costs_lookup(self) -> bool:
        """Whether the term counts toward the 10-lookup limit (RFC 7208 4.6.4)."""
        return self.kind in _LOOKUP_KINDS

    @property
    def has_macro(self) -> bool:
        return self.domain is not None and "%" in self.domain


@dataclass(frozen=True)
class Modifier:
    """One ``name=value`` term; ``redirect`` and ``exp`` are the two RFC 7208 defines."""

    name: str
    value: str
    text: str
    position: int

    @property
    def costs_lookup(self) -> bool:
        return self.name == "redirect"

    @property
    def has_macro(self) -> bool:
        return "%" in self.value


Term = Mechanism | Modifier


@dataclass(frozen=True)
class SpfRecord:
    """A syntactically valid SPF record."""

    text: str
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        return tuple(t for t in self.terms if isinstance(t, Mechanism))

    @property
    def modifiers(self) -> tuple[Modifier, ...]:
        return tuple(t for t in self.terms if isinstance(t, Modifier))

    @property
    def all(self) -> Mechanism | None:
        """The first ``all`` mechanism: evaluation never goes past it."""
        return next((m for m in self.mechanisms if m.kind is MechanismKind.ALL), None)

    @property
    def redirect(self) -> Modifier | None:
        """The ``redirect`` modifier, or None. RFC 7208 6.1: it is ignored when ``all`` is present."""
        return next((m for m in self.modifiers if m.name == "redirect"), None)

    @property
    def effective_redirect(self) -> Modifier | None:
        return None if self.all is not None else self.redirect

    @property
    def explanation(self) -> Modifier | None:
        return next((m for m in self.modifiers if m.name == "exp"), None)

    def lookup_terms(self) -> tuple[Term, ...]:
        """The terms that count toward the lookup limit, in evaluation order (redirect last)."""
        terms: list[Term] = [m for m in self.mechanisms if m.costs_lookup]
        redirect = self.effective_redirect
        if redirect is not None:
            terms.append(redirect)
        return tuple(terms)


_VERSION = "v=spf1"
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9\-_.]*)=")
_MECHANISM_NAME = re.compile(r"[A-Za-z0-9]*")
# dual-cidr-length at the end of an a/mx argument; the ABNF forbids leading zeros.
_DUAL_CIDR = re.compile(r"(?:/(0|[1-9][0-9]{0,2}))?(?://(0|[1-9][0-9]{0,2}))?\Z")
_MACRO_LETTERS: Final = frozenset("slodiphcrtvSLODIPHCRTV")
_MACRO_DELIMITERS: Final = frozenset(".-+,/_=")
# RFC 7208 7.3: c, r and t expand only in an explanation string, never in a domain-spec.
_EXPLANATION_ONLY = re.compile(r"(?<!%)(?:%%)*%\{[cCrRtT][^}]*\}")
_TOPLABEL = re.compile(r"(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")


def is_spf_record(text: str) -> bool:
    """Whether a TXT record is an SPF record at all (RFC 7208 4.5: ``v=spf1`` then a space or end)."""
    head = text[: len(_VERSION)]
    return head.lower() == _VERSION and (len(text) == len(_VERSION) or text[len(_VERSION)] == " ")


def parse_spf(text: str) -> SpfRecord:
    """Parse one SPF record; raise :class:`RecordSyntaxError` at the first error."""
    if not is_spf_record(text):
        raise RecordSyntaxError(
            "the record does not start with 'v=spf1' followed by a space", record=text, position=0
        )
    for index, char in enumerate(text):
        if not (0x20 <= ord(char) <= 0x7E):
            raise RecordSyntaxError(
                f"the record contains the character {char!r}, which SPF does not allow "
                "(only printable ASCII and single spaces between terms)",
                record=text,
                position=index,
            )
    terms: list[Term] = []
    seen_modifiers: set[str] = set()
    position = len(_VERSION)
    for token in text[len(_VERSION) :].split(" "):
        start = position
        position += len(token) + 1
        if not token:
            continue
        term = _parse_term(text, token, start)
        if isinstance(term, Modifier) and term.name in ("redirect", "exp"):
            if term.name in seen_modifiers:
                raise RecordSyntaxError(
                    f"the modifier {term.name!r} appears more than once", record=text, position=start
                )
            seen_modifiers.add(term.name)
        terms.append(term)
    return SpfRecord(text=text, terms=tuple(terms))


def _parse_term(record: str, token: str, start: int) -> Term:
    modifier = _MODIFIER.match(token)
    if modifier is not None:
        name = modifier.group(1).lower()
        value = token[modifier.end() :]
        value_start = start + modifier.end()
        if name in ("redirect", "exp"):
            _check_domain_spec(record, value, value_start, what=f"the {name} modifier")
        else:
            _check_macro_string(record, value, value_start)
        return Modifier(name=name, value=value, text=token, position=start)
    qualifier = Qualifier.PASS
    explicit = False
    body, body_start = token, start
    if token[0] in "+-~?":
        qualifier = Qualifier(token[0])
        explicit = True
        body, body_start = token[1:], start + 1
    name_match = _MECHANISM_NAME.match(body)
    name = name_match.group(0).lower() if name_match else ""
    rest = body[len(name) :]
    rest_start = body_start + len(name)
    try:
        kind = MechanismKind(name)
    except ValueError:
        raise RecordSyntaxError(
            f"unknown mechanism {body[:40]!r}; SPF knows all, include, a, mx, ptr, ip4, ip6, "
            "exists and the modifiers redirect= and exp=",
            record=record,
            position=start,
        ) from None
    if kind is MechanismKind.ALL:
        if rest:
            raise RecordSyntaxError("'all' takes no argument", record=record, position=rest_start)
        return Mechanism(kind, qualifier, token, start, explicit_qualifier=explicit)
    if kind in (MechanismKind.INCLUDE, MechanismKind.EXISTS):
        if not rest.startswith(":") or len(rest) == 1:
            raise RecordSyntaxError(
                f"'{kind.value}' needs a domain, as in {kind.value}:example.com",
                record=record,
                position=rest_start,
            )
        _check_domain_spec(record, rest[1:], rest_start + 1, what=f"'{kind.value}'")
        return Mechanism(kind, qualifier, token, start, domain=rest[1:], explicit_qualifier=explicit)
    if kind is MechanismKind.PTR:
        domain = _optional_domain(record, rest, rest_start, kind)
        return Mechanism(kind, qualifier, token, start, domain=domain, explicit_qualifier=explicit)
    if kind in (MechanismKind.A, MechanismKind.MX):
        cidr = _DUAL_CIDR.search(rest)
        spec = rest[: cidr.start()] if cidr is not None else rest
        if cidr is None or (spec and not spec.startswith(":")):
            raise RecordSyntaxError(
                f"'{kind.value}' must be followed by ':domain', '/prefix' or nothing",
                record=record,
                position=rest_start,
            )
        cidr4 = int(cidr.group(1)) if cidr.group(1) else None
        cidr6 = int(cidr.group(2)) if cidr.group(2) else None
        if cidr4 is not None and cidr4 > 32:
            raise RecordSyntaxError(
                f"IPv4 prefix /{cidr4} is longer than 32", record=record, position=rest_start + cidr.start()
            )
        if cidr6 is not None and cidr6 > 128:
            raise RecordSyntaxError(
                f"IPv6 prefix //{cidr6} is longer than 128",
                record=record,
                position=rest_start + cidr.start(2) - 2,  # at the "//"
            )
        # A '/' inside the domain-spec is part of the name (RFC 7208 7.1: macro-literal allows it, as in
        # "a:host/one.example.com"); one in the last label is a prefix length that did not parse.
        last_label = spec.rfind(".") + 1
        if "%" not in spec and "/" in spec[last_label:]:
            raise RecordSyntaxError(
                f"'{kind.value}' has a malformed prefix length",
                record=record,
                position=rest_start + spec.index("/", last_label),
            )
        domain = _optional_domain(record, spec, rest_start, kind)
        return Mechanism(
            kind,
            qualifier,
            token,
            start,
            domain=domain,
            cidr4=cidr4,
            cidr6=cidr6,
            explicit_qualifier=explicit,
        )
    return _parse_ip(record, kind, qualifier, token, start, rest, rest_start, explicit)


def _optional_domain(record: str, rest: str, rest_start: int, kind: MechanismKind) -> str | None:
    if not rest:
        return None
    if not rest.startswith(":") or len(rest) == 1:
        raise RecordSyntaxError(
            f"'{kind.value}' must be followed by ':domain' or nothing", record=record, position=rest_start
        )
    _check_domain_spec(record, rest[1:], rest_start + 1, what=f"'{kind.value}'")
    return rest[1:]


def _parse_ip(
    record: str,
    kind: MechanismKind,
    qualifier: Qualifier,
    token: str,
    start: int,
    rest: str,
    rest_start: int,
    explicit: bool,
) -> Mechanism:
    if not rest.startswith(":") or len(rest) == 1:
        raise RecordSyntaxError(
            f"'{kind.value}' needs an address, as in {kind.value}:"
            + ("192.0.2.0/24" if kind is MechanismKind.IP4 else "2001:db8::/32"),
            record=record,
            position=rest_start,
        )
    address, _, prefix = rest[1:].partition("/")
    limit = 32 if kind is MechanismKind.IP4 else 128
    try:
        if kind is MechanismKind.IP4:
            ipaddress.IPv4Address(address)
        else:
            ipaddress.IPv6Address(address)
    except ValueError:
        raise RecordSyntaxError(
            f"{address[:60]!r} is not a valid {'IPv4' if limit == 32 else 'IPv6'} address",
            record=record,
            position=rest_start + 1,
        ) from None
    cidr: int | None = None
    if "/" in rest[1:]:
        if not re.fullmatch(r"0|[1-9][0-9]{0,2}", prefix) or int(prefix) > limit:
            raise RecordSyntaxError(
                f"'/{prefix[:10]}' is not a prefix length between 0 and {limit}",
                record=record,
                position=rest_start + 1 + len(address),
            )
        cidr = int(prefix)
    return Mechanism(
        kind,
        qualifier,
        token,
        start,
        network=address,
        cidr4=cidr if kind is MechanismKind.IP4 else None,
        cidr6=cidr if kind is MechanismKind.IP6 else None,
        explicit_qualifier=explicit,
    )


def _check_macro_string(record: str, value: str, start: int) -> None:
    """RFC 7208 7.1: literal visible characters, or %{letter digits [r] delimiters}, %%, %_, %-."""
    index = 0
    while index < len(value):
        char = value[index]
        if char != "%":
            index += 1
            continue
        following = value[index + 1 : index + 2]
        if following in ("%", "_", "-"):
            index += 2
            continue
        if following != "{":
            raise RecordSyntaxError(
                "a '%' must start a macro such as %{d}, or be written %% for a literal percent sign",
                record=record,
                position=start + index,
            )
        close = value.find("}", index)
        if close < 0:
            raise RecordSyntaxError(
                "a macro '%{' is never closed with '}'", record=record, position=start + index
            )
        inner = value[index + 2 : close]
        if not inner or inner[0] not in _MACRO_LETTERS:
            raise RecordSyntaxError(
                "a macro must start with one of the letters s l o d i p h c r t v",
                record=record,
                position=start + index,
            )
        transformers = re.fullmatch(r"([0-9]*)([rR]?)(.*)", inner[1:], re.DOTALL)
        if transformers is None or any(c not in _MACRO_DELIMITERS for c in transformers.group(3)):
            raise RecordSyntaxError(
                f"the macro %{{{inner}}} has an invalid transformer or delimiter",
                record=record,
                position=start + index,
            )
        index = close + 1


def _check_domain_spec(record: str, spec: str, start: int, *, what: str) -> None:
    """RFC 7208 7.1: domain-spec = macro-string domain-end; domain-end is "." toplabel or a macro."""
    if not spec:
        raise RecordSyntaxError(f"{what} needs a domain", record=record, position=start)
    _check_macro_string(record, spec, start)
    explanation_only = _EXPLANATION_ONLY.search(spec)
    if explanation_only is not None:
        raise RecordSyntaxError(
            f"the macro {explanation_only.group(0)} in {what} is only allowed in explanation strings "
            "(RFC 7208 7.3: c, r and t)",
            record=record,
            position=start + explanation_only.start(),
        )
    if spec.endswith("}") and "%{" in spec:
        return
    name = spec[:-1] if spec.endswith(".") else spec
    labels = name.split(".")
    if len(labels) < 2:
        raise RecordSyntaxError(
            f"{what} target {spec[:60]!r} is not a fully qualified domain name",
            record=record,
            position=start,
        )
    if "%" not in name:
        for label_index, label in enumerate(labels):
            if not label or len(label) > 63:
                offset = sum(len(item) + 1 for item in labels[:label_index])
                raise RecordSyntaxError(
                    f"{what} target {spec[:60]!r} has an empty or over-long label",
                    record=record,
                    position=start + offset,
                )
    if not _TOPLABEL.match(labels[-1]):
        raise RecordSyntaxError(
            f"{what} target {spec[:60]!r} does not end in a valid top-level label",
            record=record,
            position=start + len(name) - len(labels[-1]),
        )
