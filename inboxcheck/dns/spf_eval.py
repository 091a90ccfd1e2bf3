"""SPF evaluation: ``check_host()`` exactly as RFC 7208 section 4 defines it, over the run's DNS client.

The one SPF evaluator of the project: the public :func:`~inboxcheck.dns.spf_entry.check_host`
(dns/spf_entry.py), the send test's verdict for the relay hop (checks/send/verify.py) and the DNS
check's audit (checks/dns/spf.py) all go through :class:`SpfEvaluator`. It sits in ``dns/`` beside
the client it asks, below ``checks/``, so that the checks and the public API use it without reaching
into each other; which record a domain publishes is :mod:`inboxcheck.dns.spf_record`'s rule, and
the record itself is read by the one pure parser, :mod:`inboxcheck.dns.records.spf`.

What it implements: every mechanism (all, include, a, mx, ptr, ip4, ip6, exists) and modifier
(redirect, exp), macro expansion (section 7; c, r and t only in explanation strings), the limits
of section 4.6.4 (10 terms that query DNS, 2 void lookups, 10 MX names, 10 PTR names), IPv4-mapped
IPv6 clients evaluated as IPv4 (section 5), null MX (RFC 7505), malformed domains giving ``none``
(4.3), TXT records without strings ignored, and the client's typed answers: a timeout, SERVFAIL or
REFUSED is ``temperror``, never "no record".
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.records.spf import (
    LOOKUP_LIMIT,
    MX_NAMES_LIMIT,
    VOID_LOOKUP_LIMIT,
    Mechanism,
    MechanismKind,
    Qualifier,
    SpfRecord,
)
from inboxcheck.dns.spf_record import (
    MAX_NAME,
    RecordStatus,
    Resolve,
    SpfFetch,
    client_address,
    fetch_record,
    valid_domain,
)

__all__ = [
    "RecordStatus",
    "SpfEvaluation",
    "SpfEvaluator",
    "SpfFetch",
    "SpfQuery",
    "SpfResult",
    "fetch_record",
]

# RFC 7208 4.6.4: the names of one PTR answer looked at (the rest are ignored).
PTR_NAMES_LIMIT: Final = 10
_MACRO: Final = re.compile(r"%(?:\{([^}]*)\}|(.))", re.DOTALL)
_TRANSFORMERS: Final = re.compile(r"([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\Z")
_ALL_PARTS: Final = 1000


class SpfResult(StrEnum):
    """The results of ``check_host()`` (RFC 7208 2.6)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


_QUALIFIED: Final = {
    Qualifier.PASS: SpfResult.PASS,
    Qualifier.FAIL: SpfResult.FAIL,
    Qualifier.SOFTFAIL: SpfResult.SOFTFAIL,
    Qualifier.NEUTRAL: SpfResult.NEUTRAL,
}


class SpfQuery(BaseModel):
    """One DNS query the evaluation made, and how it ended."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    status: str


class SpfEvaluation(BaseModel):
    """What ``check_host()`` found for one client address and one domain.

    ``explanation`` is the domain's own (its ``exp=`` text, expanded) and is set only for ``fail``;
    ``mechanism`` is the term that decided the result (None when none matched), found in the record of
    ``mechanism_domain``; ``reason`` says in words why the result is what it is (for an error: which
    lookup or which limit). ``lookup_terms`` counts the terms that query DNS (at most 10 allowed),
    ``void_lookups`` the lookups that found nothing (at most 2); ``queries`` lists every DNS query made.
    """

    model_config = ConfigDict(frozen=True)

    result: SpfResult
    ip: str
    domain: str
    sender: str
    helo: str | None = None
    explanation: str | None = None
    mechanism: str | None = None
    mechanism_domain: str | None = None
    record: str | None = None
    reason: str = ""
    lookup_terms: int = 0
    void_lookups: int = 0
    queries: tuple[SpfQuery, ...] = ()


class _Stop(Exception):
    """Ends the evaluation with ``result`` (permerror or temperror) at once."""

    def __init__(self, result: SpfResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(frozen=True)
class _Outcome:
    result: SpfResult
    mechanism: str | None = None
    domain: str | None = None
    explanation: str | None = None
    reason: str = ""


class SpfEvaluator:
    """One ``check_host()`` evaluation: its counters, its queries and the client's macro values.

    ``resolve`` answers one (name, type) lookup: the DNS client's own ``query``, or a check's CNAME-
    following view of it. ``receiver`` is the ``%{r}`` macro (the receiving host, "unknown" by
    default) and ``now`` the ``%{t}`` one.
    """

    def __init__(
        self,
        resolve: Resolve,
        ip: str,
        *,
        sender: str,
        helo: str | None = None,
        receiver: str = "unknown",
        now: float | None = None,
    ) -> None:
        self.resolve = resolve
        self.ip = client_address(ip)
        local, _, domain = sender.rpartition("@")
        self.local = local or "postmaster"
        self.sender_domain = domain
        self.sender = f"{self.local}@{domain}"
        self.helo = helo
        self.receiver = receiver
        self.now = int(now if now is not None else time.time())
        self.lookup_terms = 0
        self.void_lookups = 0
        self.queries: list[SpfQuery] = []
        self._validated: list[str] | None = None
        self._answers: dict[tuple[str, str], DnsAnswer] = {}

    @property
    def _ipv4(self) -> bool:
        return isinstance(self.ip, ipaddress.IPv4Address)

    async def check_host(self, domain: str) -> SpfEvaluation:
        domain = domain.strip().rstrip(".").lower()
        record: list[str] = []
        try:
            outcome = await self._check(domain, record_seen=record)
        except _Stop as stop:
            outcome = _Outcome(stop.result, reason=stop.reason)
        return SpfEvaluation(
            result=outcome.result,
            ip=str(self.ip),
            domain=domain,
            sender=self.sender,
            helo=self.helo,
            explanation=outcome.explanation,
            mechanism=outcome.mechanism,
            mechanism_domain=outcome.domain,
            record=record[0] if record else None,
            reason=outcome.reason,
            lookup_terms=self.lookup_terms,
            void_lookups=self.void_lookups,
            queries=tuple(self.queries),
        )

    # ----------------------------------------------------------------------------------------------
    # DNS

    async def _query(self, name: str, rdtype: str, *, void: bool = True) -> DnsAnswer:
        """One lookup; a name that is no valid DNS name finds nothing (and is never sent)."""
        name = name.rstrip(".").lower()
        key = (name, rdtype)
        answer = self._answers.get(key)
        if answer is None:
            # RFC 7208 4.3: names are looked up as A-labels; a macro that expands to other text
            # (a UTF-8 local part) names nothing, like any other malformed name.
            if not name.isascii() or (
                not valid_domain(name) and not (name.count(".") == 0 and 0 < len(name) <= 63)
            ):
                answer = DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN, error="not a valid domain name")
            else:
                answer = await self.resolve(name, rdtype)
                self.queries.append(SpfQuery(name=name, type=rdtype, status=answer.status.value))
            self._answers[key] = answer
        if void and answer.definite and not answer.ok:
            self.void_lookups += 1
            if self.void_lookups > VOID_LOOKUP_LIMIT:
                raise _Stop(
                    SpfResult.PERMERROR,
                    f"more than {VOID_LOOKUP_LIMIT} lookups found nothing (the last: {name} {rdtype}); "
                    "RFC 7208 4.6.4 makes that a permanent error",
                )
        return answer

    @staticmethod
    def _unusable(answer: DnsAnswer) -> _Stop:
        detail = f" ({answer.error})" if answer.error else ""
        return _Stop(
            SpfResult.TEMPERROR,
            f"the lookup of {answer.name} {answer.rdtype} got no usable answer: "
            f"{answer.status.value}{detail}",
        )

    def _count(self, term: str) -> None:
        self.lookup_terms += 1
        if self.lookup_terms > LOOKUP_LIMIT:
            raise _Stop(
                SpfResult.PERMERROR,
                f"{term} is the {self.lookup_terms}th term that needs DNS; RFC 7208 4.6.4 allows "
                f"{LOOKUP_LIMIT}",
            )

    async def _addresses(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        answer = await self._query(name, "A" if self._ipv4 else "AAAA")
        if not answer.definite:
            raise self._unusable(answer)
        return [ipaddress.ip_address(text) for text in answer.records()]

    # ----------------------------------------------------------------------------------------------
    # check_host

    async def _check(self, domain: str, *, record_seen: list[str] | None = None) -> _Outcome:
        fetched = await fetch_record(self._query, domain)
        if fetched.status is RecordStatus.UNAVAILABLE:
            assert fetched.answer is not None
            raise self._unusable(fetched.answer)
        if len(fetched.texts) == 1 and record_seen is not None:
            record_seen.append(fetched.texts[0])
        if fetched.status is RecordStatus.NONE:
            return _Outcome(SpfResult.NONE, reason=fetched.reason)
        if fetched.record is None:
            return _Outcome(SpfResult.PERMERROR, reason=fetched.reason)
        record = fetched.record
        for mechanism in record.mechanisms:
            if await self._matches(mechanism, domain):
                result = _QUALIFIED[mechanism.qualifier]
                explanation = await self._explain(record, domain) if result is SpfResult.FAIL else None
                return _Outcome(
                    result,
                    mechanism.text,
                    domain,
                    explanation,
                    f"{mechanism.text} in the SPF record of {domain} matched",
                )
        redirect = record.effective_redirect
        if redirect is not None:
            self._count(redirect.text)
            target = await self._expand(redirect.value, domain)
            outcome = await self._check(target)
            if outcome.result is SpfResult.NONE:
                return _Outcome(
                    SpfResult.PERMERROR,
                    reason=f"{redirect.text} in the SPF record of {domain} leads to no SPF record "
                    f"({outcome.reason})",
                )
            return outcome
        return _Outcome(SpfResult.NEUTRAL, reason=f"no term of the SPF record of {domain} matched")

    async def _matches(self, mechanism: Mechanism, domain: str) -> bool:
        kind = mechanism.kind
        if kind is MechanismKind.ALL:
            return True
        if kind in (MechanismKind.IP4, MechanismKind.IP6):
            if (kind is MechanismKind.IP4) != self._ipv4:
                return False
            prefix = mechanism.cidr4 if kind is MechanismKind.IP4 else mechanism.cidr6
            network = ipaddress.ip_network(
                f"{mechanism.network}/{prefix if prefix is not None else (32 if self._ipv4 else 128)}",
                strict=False,
            )
            return self.ip in network
        self._count(mechanism.text)
        target = await self._expand(mechanism.domain, domain) if mechanism.domain is not None else domain
        if kind is MechanismKind.INCLUDE:
            outcome = await self._check(target)
            if outcome.result is SpfResult.PASS:
                return True
            if outcome.result in (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL):
                return False
            if outcome.result is SpfResult.TEMPERROR:
                raise _Stop(SpfResult.TEMPERROR, outcome.reason)
            raise _Stop(
                SpfResult.PERMERROR, f"{mechanism.text} in the SPF record of {domain}: {outcome.reason}"
            )
        if kind is MechanismKind.EXISTS:
            answer = await self._query(target, "A")
            if not answer.definite:
                raise self._unusable(answer)
            return answer.ok
        if kind is MechanismKind.PTR:
            return any(
                name == target or name.endswith("." + target) for name in await self._validated_names()
            )
        if kind is MechanismKind.A:
            return self._in_range(await self._addresses(target), mechanism)
        # mx
        answer = await self._query(target, "MX")
        if not answer.definite:
            raise self._unusable(answer)
        exchanges = [
            (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower())
            for rdata in (answer.rrset or ())
        ]
        if len(exchanges) > MX_NAMES_LIMIT:
            raise _Stop(
                SpfResult.PERMERROR,
                f"{mechanism.text}: {target} has {len(exchanges)} MX names; RFC 7208 4.6.4 allows "
                f"{MX_NAMES_LIMIT}",
            )
        for _preference, exchange in sorted(exchanges):
            # RFC 7505: "0 ." is a null MX, a domain that accepts no mail: it has no address to match.
            if exchange in ("", "."):
                continue
            if self._in_range(await self._addresses(exchange), mechanism):
                return True
        return False

    def _in_range(
        self, addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address], term: Mechanism
    ) -> bool:
        prefix = (
            (term.cidr4 if term.cidr4 is not None else 32)
            if self._ipv4
            else (term.cidr6 if term.cidr6 is not None else 128)
        )
        for address in addresses:
            if address.version == self.ip.version and self.ip in ipaddress.ip_network(
                f"{address}/{prefix}", strict=False
            ):
                return True
        return False

    async def _validated_names(self) -> list[str]:
        """RFC 7208 5.5: the client's PTR names whose addresses include it (the first 10 names).

        A DNS error on the PTR lookup means no name; on an address lookup, that name is skipped."""
        if self._validated is not None:
            return self._validated
        names: list[str] = []
        reverse = self.ip.reverse_pointer
        answer = await self._query(reverse, "PTR")
        if answer.ok:
            ptrs = [rdata.to_text().rstrip(".").lower() for rdata in answer.rrset or ()]
            for name in ptrs[:PTR_NAMES_LIMIT]:
                try:
                    addresses = await self._addresses(name)
                except _Stop as stop:
                    if stop.result is SpfResult.TEMPERROR:
                        continue
                    raise
                if self.ip in addresses:
                    names.append(name)
        self._validated = names
        return names

    async def _explain(self, record: SpfRecord, domain: str) -> str | None:
        """RFC 7208 6.2: the domain's explanation for a fail; any problem means none."""
        exp = record.explanation
        if exp is None:
            return None
        try:
            target = await self._expand(exp.value, domain)
        except _Stop:
            return None
        if not valid_domain(target):
            return None
        answer = await self._query(target, "TXT", void=False)
        texts = answer.texts() if answer.ok else []
        if len(texts) != 1 or not texts[0].isascii():
            return None
        try:
            return await self._expand_text(texts[0], domain)
        except _Stop:
            return None

    # ----------------------------------------------------------------------------------------------
    # Macros (RFC 7208 section 7)

    async def _expand(self, spec: str, domain: str) -> str:
        """A domain-spec with its macros expanded, ready to look up."""
        if "%" not in spec:
            return spec.rstrip(".").lower()
        ptr = await self._p(domain) if _p_needed(spec) else None
        expanded = self._substitute(spec, domain, explanation=False, ptr=ptr)
        expanded = expanded.rstrip(".")
        while len(expanded) > MAX_NAME and "." in expanded:
            expanded = expanded.split(".", 1)[1]
        return expanded.lower()

    async def _expand_text(self, text: str, domain: str) -> str:
        ptr = await self._p(domain) if _p_needed(text) else None
        return self._substitute(text, domain, explanation=True, ptr=ptr)

    async def _p(self, domain: str) -> str:
        names = await self._validated_names()
        if not names:
            return "unknown"
        if domain in names:
            return domain
        return next((name for name in names if name.endswith("." + domain)), names[0])

    def _substitute(self, text: str, domain: str, *, explanation: bool, ptr: str | None) -> str:
        out: list[str] = []
        position = 0
        for match in _MACRO.finditer(text):
            out.append(text[position : match.start()])
            position = match.end()
            body, single = match.group(1), match.group(2)
            if single is not None:
                replacement = {"%": "%", "_": " ", "-": "%20"}.get(single)
                if replacement is None:
                    raise _Stop(SpfResult.PERMERROR, f"'%{single}' is no macro (RFC 7208 7.1)")
                out.append(replacement)
                continue
            out.append(self._macro(body, domain, explanation=explanation, ptr=ptr))
        rest = text[position:]
        if "%" in rest:
            raise _Stop(SpfResult.PERMERROR, "a '%' at the end is no macro (RFC 7208 7.1)")
        out.append(rest)
        return "".join(out)

    def _macro(self, body: str, domain: str, *, explanation: bool, ptr: str | None) -> str:
        parts = _TRANSFORMERS.match(body)
        if parts is None:
            raise _Stop(SpfResult.PERMERROR, f"%{{{body[:40]}}} is no valid macro (RFC 7208 7.1)")
        letter, digits, reverse, delimiters = parts.groups()
        lower = letter.lower()
        if lower in "crt" and not explanation:
            raise _Stop(
                SpfResult.PERMERROR,
                f"the macro %{{{body[:40]}}} is only allowed in explanation strings (RFC 7208 7.3)",
            )
        value = self._letter(lower, domain, ptr)
        if value is None:
            raise _Stop(SpfResult.PERMERROR, f"%{{{body[:40]}}} names no macro letter (RFC 7208 7.3)")
        # A name has at most 127 labels: any count from 128 up keeps them all, and is never converted
        # as a whole (a record may carry thousands of digits, past what int() accepts).
        significant = digits.lstrip("0")
        keep = _ALL_PARTS if len(significant) > 3 else int(significant or "0")
        if digits and keep == 0:
            raise _Stop(
                SpfResult.PERMERROR, f"%{{{body[:40]}}}: the number of parts may not be 0 (RFC 7208 7.3)"
            )
        if digits or reverse or delimiters:
            pieces = re.split("[" + re.escape(delimiters or ".") + "]", value)
            if reverse:
                pieces.reverse()
            if digits:
                pieces = pieces[-keep:]
            value = ".".join(pieces)
        if letter.isupper():
            value = urllib.parse.quote(value, safe="~")
        return value

    def _letter(self, letter: str, domain: str, ptr: str | None) -> str | None:
        if letter == "s":
            return self.sender
        if letter == "l":
            return self.local
        if letter == "o":
            return self.sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            if self._ipv4:
                return str(self.ip)
            return ".".join(self.ip.exploded.replace(":", "").upper())
        if letter == "p":
            return ptr if ptr is not None else "unknown"
        if letter == "v":
            return "in-addr" if self._ipv4 else "ip6"
        if letter == "h":
            return self.helo or "unknown"
        if letter == "c":
            return str(self.ip)
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(self.now)
        return None


def _p_needed(spec: str) -> bool:
    return bool(re.search(r"%\{[pP]", spec))


# --------------------------------------------------------------------------------------------------
# The checks' entry point (the public check_host, with a DNS client of its own, is in spf_entry.py)


async def evaluate(
    resolve: Resolve,
    ip: str,
    domain: str,
    *,
    sender: str | None = None,
    helo: str | None = None,
    receiver: str = "unknown",
) -> SpfEvaluation:
    """``check_host()`` with lookups answered by ``resolve`` (the checks' entry point)."""
    evaluator = SpfEvaluator(
        resolve, ip, sender=sender or f"postmaster@{domain}", helo=helo, receiver=receiver
    )
    return await evaluator.check_host(domain)
