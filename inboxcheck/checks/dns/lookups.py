"""What every DNS check shares: lookups that follow CNAMEs, remember what they asked and stop at the
run's deadline; the "could not tell" finding.

:class:`Lookups` is the one door to DNS for checks and discovery: a check asks ``Lookups(ctx).get``
(or ``addresses``), never ``ctx.dns`` itself, so every lookup follows CNAMEs across zones, shows in
the check's details and ends when the run's deadline does."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import RESOURCES_FIX, CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.records.spf import (
    is_spf_record,
)

MAX_CNAME_HOPS: Final = 8
_LOOP: Final = "the CNAME chain leads back to itself"
UNAVAILABLE_FIX: Final = (
    "Check that the DNS server is reachable and answering (or pass a working one with --nameserver), "
    "then run again; a lookup that failed says nothing about the domain's records."
)


# --------------------------------------------------------------------------------------------------
# Lookups


@dataclass(frozen=True)
class Lookup:
    """A lookup with the CNAMEs followed to reach its answer."""

    name: str
    rdtype: str
    answer: DnsAnswer
    chain: tuple[str, ...] = ()

    @property
    def definite(self) -> bool:
        return self.answer.definite

    def evidence(self) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = {
            "name": self.name,
            "type": self.rdtype,
            "status": self.answer.status.value,
            "duration_ms": self.answer.duration_ms,
        }
        if self.chain:
            data["cname_chain"] = list(self.chain)
        if self.answer.ok:
            data["records"] = list(self.answer.records())
        if self.answer.error:
            data["error"] = self.answer.error
        return data

    def describe(self) -> str:
        via = f" (via CNAME {' -> '.join(self.chain)})" if self.chain else ""
        return f"{self.name} {self.rdtype}{via}: " + (
            "; ".join(self.answer.records()) if self.answer.ok else self._status_text()
        )

    def _status_text(self) -> str:
        status = self.answer.status
        if status is DnsStatus.NXDOMAIN:
            return "the name does not exist (NXDOMAIN)"
        if status is DnsStatus.NODATA:
            return "no record of this type (NODATA)"
        return f"{status.value}" + (f" ({self.answer.error})" if self.answer.error else "")


class Lookups:
    """One check's view of the shared DNS client: follows CNAMEs and remembers what it asked."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.seen: list[Lookup] = []

    async def addresses(self, host: str) -> tuple[Lookup, Lookup]:
        """The A and the AAAA lookup of ``host``, asked together."""
        a, aaaa = await asyncio.gather(self.get(host, "A"), self.get(host, "AAAA"))
        return a, aaaa

    async def _ask(self, name: str, rdtype: str) -> DnsAnswer:
        """One question to the run's shared client, given up (as "could not tell") at the deadline.

        The client bounds each lookup by ``--timeout``; the run's deadline may come sooner, and a
        lookup waits no longer than a connect does. An answer the client already has is returned
        as it is, without arming the deadline's timer (it could not fire before the return anyway)."""
        client = self.ctx.dns
        answer = client.cached(name, rdtype)
        if answer is not None:
            return answer
        left = self.ctx.remaining()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(left):
                return await client.query(name, rdtype)
        except TimeoutError:
            return DnsAnswer(
                name,
                rdtype,
                DnsStatus.TIMEOUT,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
                error=f"the run's deadline came first ({left:g} s were left)",
            )

    async def get(self, name: str, rdtype: str) -> Lookup:
        answer = await self._ask(name, rdtype)
        chain: list[str] = list(answer.cname_chain)
        # An authoritative server does not chase a CNAME into another zone: it answers the CNAME
        # alone, which looks like NODATA. Follow it, as a recursive resolver would; a chain that
        # comes back to a name already passed (across zones) is a loop, not a missing record.
        visited = {name.lower().rstrip("."), *(c.lower() for c in chain)}
        for _ in range(MAX_CNAME_HOPS):
            if answer.status is not DnsStatus.NODATA or not answer.cname_chain:
                break
            answer = await self._ask(answer.cname_chain[-1], rdtype)
            chain.extend(answer.cname_chain)
            hops = {c.lower() for c in answer.cname_chain}
            if visited & hops:
                answer = replace(answer, status=DnsStatus.CNAME_LOOP, rrset=None, error=_LOOP)
                break
            visited |= hops
        lookup = Lookup(name, rdtype, answer, tuple(chain))
        self.seen.append(lookup)
        return lookup

    def timings(self) -> list[JsonValue]:
        """Each lookup with its outcome and time, for the check's details."""
        unique: dict[tuple[str, str], Lookup] = {}
        for lookup in self.seen:
            unique.setdefault((lookup.name.lower(), lookup.rdtype), lookup)
        return [
            {
                "name": lookup.name,
                "type": lookup.rdtype,
                "status": lookup.answer.status.value,
                "ms": lookup.answer.duration_ms,
            }
            for lookup in unique.values()
        ]

    def unavailable(self) -> list[Lookup]:
        unique: dict[tuple[str, str], Lookup] = {}
        for lookup in self.seen:
            if not lookup.definite:
                unique.setdefault((lookup.name.lower(), lookup.rdtype), lookup)
        return list(unique.values())


def report_shortage(out: Outcome, answer: DnsAnswer, purpose: str, **evidence: JsonValue) -> bool:
    """``run.resources`` (could not tell, error) when this machine had no descriptor left to send
    ``answer``'s lookup; True if so. A caller's own "could not tell" finding is for the others."""
    if answer.status is not DnsStatus.RESOURCES:
        return False
    out.add(
        "run.resources",
        Severity.ERROR,
        _shortage_message(purpose, f"{answer.name} {answer.rdtype}"),
        fix=RESOURCES_FIX,
        **evidence,
    )
    return True


def _shortage_message(purpose: str, what: str) -> str:
    return (
        f"Could not tell {purpose}: this machine ran short of resources (too many open files) before the "
        f"lookup of {what} could be sent, a limit of this machine and not the domain's fault."
    )


def report_unavailable(out: Outcome, lookups: Lookups, purpose: str) -> bool:
    """One finding for the lookups without a readable answer; True if any.

    ``dns.cname_loop`` (a broken record, fail) for CNAME chains that lead back to themselves,
    ``run.resources`` (could not tell, error) for lookups this machine had no descriptor left to send,
    ``dns.unavailable`` (could not tell, error) for the others.
    """
    failed = lookups.unavailable()
    if not failed:
        return False
    loops = [lookup for lookup in failed if lookup.answer.status is DnsStatus.CNAME_LOOP]
    short = [lookup for lookup in failed if lookup.answer.status is DnsStatus.RESOURCES]
    others = [
        lookup for lookup in failed if lookup.answer.status not in (DnsStatus.CNAME_LOOP, DnsStatus.RESOURCES)
    ]
    if loops:
        first = loops[0]
        more = f" (and {len(loops) - 1} more name(s))" if len(loops) > 1 else ""
        out.add(
            "dns.cname_loop",
            Severity.FAIL,
            f"The name {first.name}{more} is a CNAME whose chain ({' -> '.join(first.chain)}) leads "
            f"back to itself, so no receiver can read the record (looked up to tell {purpose}).",
            fix=f"Point the CNAME at {first.name} at the name that holds the record (or replace it with "
            "the record itself), so that the chain ends.",
            lookups=[lookup.evidence() for lookup in loops],
        )
    if short:
        first = short[0]
        more = f" and {len(short) - 1} more lookup(s)" if len(short) > 1 else ""
        out.add(
            "run.resources",
            Severity.ERROR,
            _shortage_message(purpose, f"{first.name} {first.rdtype}{more}"),
            fix=RESOURCES_FIX,
            lookups=[lookup.evidence() for lookup in short],
        )
    if others:
        first = others[0]
        more = f" and {len(others) - 1} more lookup(s)" if len(others) > 1 else ""
        out.add(
            "dns.unavailable",
            Severity.ERROR,
            f"Could not tell {purpose}: the lookup of {first.name} {first.rdtype}{more} got no usable "
            f"answer ({first.answer.status.value}), which says nothing about whether the record exists.",
            fix=UNAVAILABLE_FIX,
            lookups=[lookup.evidence() for lookup in others],
        )
    return True


def finish(out: Outcome, lookups: Lookups) -> Outcome:
    out.details["lookups"] = lookups.timings()
    return out


def spf_texts(lookup: Lookup) -> list[str]:
    return [text for text in lookup.answer.texts() if is_spf_record(text)]
