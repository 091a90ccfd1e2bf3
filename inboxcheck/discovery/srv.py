"""RFC 6186 / RFC 8314 service records: ``_submissions._tcp``, ``_submission._tcp``, ``_imaps._tcp``
and ``_imap._tcp``. Ordering is pure (tested apart from DNS); the lookups go through the run's
:class:`~inboxcheck.checks.dns.lookups.Lookups`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from inboxcheck._endpoint import TlsMode
from inboxcheck.discovery.model import MailProtocol

if TYPE_CHECKING:
    from inboxcheck.checks.dns.lookups import Lookups
    from inboxcheck.dns.client import DnsAnswer

__all__ = ["SERVICES", "SrvRecord", "SrvService", "lookup_srv", "order_records"]


@dataclass(frozen=True)
class SrvService:
    label: str
    protocol: MailProtocol
    tls: TlsMode


# RFC 8314 section 5.1: implicit TLS is preferred, so its services are listed (and ranked) first.
SERVICES: Final = (
    SrvService("_submissions._tcp", MailProtocol.SMTP, TlsMode.IMPLICIT),
    SrvService("_submission._tcp", MailProtocol.SMTP, TlsMode.STARTTLS),
    SrvService("_imaps._tcp", MailProtocol.IMAP, TlsMode.IMPLICIT),
    SrvService("_imap._tcp", MailProtocol.IMAP, TlsMode.STARTTLS),
)


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # without the final dot; "" for the "." target

    @property
    def not_offered(self) -> bool:
        """RFC 6186 section 3 (after RFC 2782): a target of "." means the service is not offered."""
        return self.target == ""


def order_records(records: list[SrvRecord]) -> list[SrvRecord]:
    """Lowest priority first; within a priority, heaviest weight first.

    RFC 2782 picks within a priority at random in proportion to weight; a deterministic order that
    tries the heaviest first keeps reports reproducible, and every record is tried anyway.
    """
    return sorted(records, key=lambda r: (r.priority, -r.weight, r.target, r.port))


def records_of(answer: DnsAnswer) -> list[SrvRecord]:
    if answer.rrset is None:
        return []
    out = []
    for rdata in answer.rrset:
        target = rdata.target.to_text(omit_final_dot=True)
        out.append(SrvRecord(rdata.priority, rdata.weight, rdata.port, "" if target in ("", ".") else target))
    return out


async def lookup_srv(lookups: Lookups, domain: str) -> list[tuple[SrvService, DnsAnswer]]:
    """Every service's answer for ``domain``, asked together."""
    found = await asyncio.gather(*(lookups.get(f"{s.label}.{domain}", "SRV") for s in SERVICES))
    return [(service, lookup.answer) for service, lookup in zip(SERVICES, found, strict=True)]
