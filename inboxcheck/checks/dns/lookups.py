"""What every DNS check shares: lookups that follow CNAMEs and remember what they asked, the
"could not tell" finding, and the organisational domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.records.spf import (
    is_spf_record,
)

MAX_CNAME_HOPS: Final = 8
UNAVAILABLE_FIX: Final = (
    "Check that the DNS server is reachable and answering (or pass a working one with --nameserver), "
    "then run again; a lookup that failed says nothing about the domain's records."
)


def organisational_domain(domain: str) -> str:
    """The registered domain, taken as the last two labels.

    A simplification of RFC 7489 3.2 (which uses the public suffix list): inboxcheck has no PSL
    dependency, and for multi-label suffixes such as ``co.uk`` this returns the suffix itself, whose
    ``_dmarc`` lookup then simply finds nothing. The exact domain is always tried first.
    """
    labels = domain.rstrip(".").lower().split(".")
    return ".".join(labels[-2:])


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

    async def get(self, name: str, rdtype: str) -> Lookup:
        answer = await self.ctx.dns.query(name, rdtype)
        chain: list[str] = list(answer.cname_chain)
        # An authoritative server does not chase a CNAME into another zone: it answers the CNAME
        # alone, which looks like NODATA. Follow it, as a recursive resolver would.
        for _ in range(MAX_CNAME_HOPS):
            if answer.status is not DnsStatus.NODATA or not answer.cname_chain:
                break
            answer = await self.ctx.dns.query(answer.cname_chain[-1], rdtype)
            chain.extend(answer.cname_chain)
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


def report_unavailable(out: Outcome, lookups: Lookups, purpose: str) -> bool:
    """One ``dns.unavailable`` finding for every lookup that could not be answered; True if any."""
    failed = lookups.unavailable()
    if not failed:
        return False
    first = failed[0]
    others = f" and {len(failed) - 1} more lookup(s)" if len(failed) > 1 else ""
    out.add(
        "dns.unavailable",
        Severity.ERROR,
        f"Could not tell {purpose}: the lookup of {first.name} {first.rdtype}{others} got no usable "
        f"answer ({first.answer.status.value}), which says nothing about whether the record exists.",
        fix=UNAVAILABLE_FIX,
        lookups=[lookup.evidence() for lookup in failed],
    )
    return True


def finish(out: Outcome, lookups: Lookups) -> Outcome:
    out.details["lookups"] = lookups.timings()
    return out


def spf_texts(lookup: Lookup) -> list[str]:
    return [text for text in lookup.answer.texts() if is_spf_record(text)]
