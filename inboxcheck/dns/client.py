"""One DNS client per run: every lookup goes through it, each (name, type) is asked once.

A lookup ends in a definite answer (records, NXDOMAIN, no data) or in "could not tell" (timeout,
SERVFAIL, REFUSED, a network error). Checks must treat the second kind as ``dns.unavailable`` and never
as "record missing": an unreachable server proves nothing about the domain.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from inboxcheck._models import ascii_domain
from inboxcheck._options import Nameserver

if TYPE_CHECKING:
    from inboxcheck.dns.wire import WireTransport

__all__ = ["DnsAnswer", "DnsClient", "DnsStatus", "make_resolver"]


class DnsStatus(StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, but has no record of this type
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    ERROR = "error"

    @property
    def definite(self) -> bool:
        """True for a real answer about the domain, False for "could not tell"."""
        return self in (DnsStatus.OK, DnsStatus.NXDOMAIN, DnsStatus.NODATA)


@dataclass(frozen=True)
class DnsAnswer:
    """The outcome of one lookup, in a form checks can report as evidence."""

    name: str
    rdtype: str
    status: DnsStatus
    rrset: dns.rrset.RRset | None = None
    canonical_name: str | None = None
    duration_ms: float = 0.0
    error: str | None = None
    cname_chain: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status is DnsStatus.OK

    @property
    def definite(self) -> bool:
        return self.status.definite

    @property
    def exists(self) -> bool:
        """False only for a definite NXDOMAIN/NODATA; raises nothing for "could not tell"."""
        return self.status is DnsStatus.OK

    def records(self) -> list[str]:
        """Each record in presentation form (TXT strings joined, without quotes)."""
        if self.rrset is None:
            return []
        if self.rdtype == "TXT":
            return self.texts()
        return [rdata.to_text() for rdata in self.rrset]

    def texts(self) -> list[str]:
        """TXT records with their character-strings concatenated (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        if self.rrset is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in self.rrset]

    def text_strings(self) -> list[tuple[bytes, ...]]:
        """TXT records as their raw character-strings, to check each one's length."""
        if self.rrset is None:
            return []
        return [tuple(rdata.strings) for rdata in self.rrset]

    def describe(self) -> str:
        """A short account of the outcome for evidence and messages."""
        if self.status is DnsStatus.OK:
            return f"{self.name} {self.rdtype}: " + "; ".join(self.records())
        detail = f" ({self.error})" if self.error else ""
        return f"{self.name} {self.rdtype}: {self.status.value}{detail}"


def make_resolver(nameservers: Iterable[Nameserver], *, timeout: float) -> dns.asyncresolver.Resolver:
    """A private resolver: the given servers only, or the system's when none are given.

    Never the module's default resolver, which other code in the process may share or mutate.
    """
    servers = list(nameservers)
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(s.host, s.port) for s in servers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None
    return resolver


class DnsClient:
    """Shares lookups between checks: concurrent asks for the same (name, type) await one query.

    One client serves a run, or a whole batch (where many accounts share a domain). ``max_entries``
    bounds what it remembers, oldest first, so a batch of any length runs in flat memory.
    ``queries`` lists the lookups really sent (for tests); ``sent`` counts them, and is all a batch
    keeps (``record=False``).
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        timeout: float,
        max_entries: int = 50_000,
        record: bool = True,
        transport: WireTransport | None = None,
    ) -> None:
        self.resolver = resolver
        # Optional lean UDP path for TXT/MX/A/AAAA (inboxcheck.dns.wire); dnspython does the rest.
        self.transport = transport
        self.timeout = timeout
        self.max_entries = max_entries
        self.record = record
        # A lookup in flight is its task (concurrent askers await it); a finished one is only its answer:
        # a done Task costs about as much again as the answer it holds, which adds up over a batch.
        self._entries: OrderedDict[tuple[str, str], asyncio.Task[DnsAnswer] | DnsAnswer] = OrderedDict()
        self._waiting: Counter[tuple[str, str]] = Counter()
        self.queries: list[tuple[str, str]] = []
        self.sent = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = (_normalise(name), rdtype.upper())
        entry = self._entries.get(key)
        if entry is None:
            entry = asyncio.ensure_future(self._query(*key))
            entry.add_done_callback(functools.partial(self._settle, key))
            self._entries[key] = entry
            self._evict()
        else:
            self._entries.move_to_end(key)
            if isinstance(entry, DnsAnswer):
                return entry
        self._waiting[key] += 1
        try:
            return await asyncio.shield(entry)
        except asyncio.CancelledError:
            # The lookup is shared, so one asker giving up must not end it for the others; the last
            # one to leave ends it, so that a cancelled run leaves no lookup behind.
            if self._waiting[key] == 1 and not entry.done():
                entry.cancel()
                if self._entries.get(key) is entry:
                    del self._entries[key]
                await asyncio.wait({entry})
            raise
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    def _settle(self, key: tuple[str, str], task: asyncio.Task[DnsAnswer]) -> None:
        """Keep the answer in the task's place (same position in the eviction order)."""
        if self._entries.get(key) is task and not task.cancelled() and task.exception() is None:
            self._entries[key] = task.result()

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            key, oldest = next(iter(self._entries.items()))
            if isinstance(oldest, asyncio.Task) and not oldest.done():
                return
            del self._entries[key]

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        self.sent += 1
        if self.record:
            self.queries.append((name, rdtype))
        start = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - start) * 1000, 2)

        if self.transport is not None and rdtype in self.transport.rdtypes:
            wire = await self.transport.resolve(name, rdtype)
            if wire is not None:
                return DnsAnswer(
                    name,
                    rdtype,
                    DnsStatus(wire.status),
                    rrset=wire.rrset,
                    canonical_name=wire.canonical_name if wire.rrset is not None else None,
                    duration_ms=elapsed(),
                    error=wire.error,
                    cname_chain=wire.chain,
                )
        try:
            answer = await self.resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=self.timeout, search=False
            )
        except dns.resolver.NXDOMAIN:
            return DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN, duration_ms=elapsed())
        except dns.exception.Timeout:
            return DnsAnswer(
                name,
                rdtype,
                DnsStatus.TIMEOUT,
                duration_ms=elapsed(),
                error=f"no answer within {self.timeout:g} s",
            )
        except dns.resolver.NoNameservers as exc:
            status, error = _classify_no_nameservers(exc)
            return DnsAnswer(name, rdtype, status, duration_ms=elapsed(), error=error)
        except dns.resolver.YXDOMAIN:
            return DnsAnswer(name, rdtype, DnsStatus.ERROR, duration_ms=elapsed(), error="YXDOMAIN")
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return DnsAnswer(
                name, rdtype, DnsStatus.ERROR, duration_ms=elapsed(), error=str(exc) or type(exc).__name__
            )
        chain = _cname_chain(answer.response, name)
        if answer.rrset is None:
            return DnsAnswer(name, rdtype, DnsStatus.NODATA, duration_ms=elapsed(), cname_chain=chain)
        return DnsAnswer(
            name,
            rdtype,
            DnsStatus.OK,
            rrset=answer.rrset,
            canonical_name=answer.canonical_name.to_text(omit_final_dot=True),
            duration_ms=elapsed(),
            cname_chain=chain,
        )


def _normalise(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return ascii_domain(name)
    except (UnicodeError, ValueError):
        return name  # the resolver turns it into an ERROR answer naming the bad label


def _classify_no_nameservers(exc: dns.resolver.NoNameservers) -> tuple[DnsStatus, str]:
    """SERVFAIL and REFUSED both surface as NoNameservers; tell them apart from the responses."""
    errors = exc.kwargs.get("errors") or []
    for error in errors:
        response = error[4] if len(error) > 4 else None
        if isinstance(response, dns.message.Message):
            rcode = response.rcode()
            if rcode == dns.rcode.REFUSED:
                return DnsStatus.REFUSED, "the server refused the query (REFUSED)"
            if rcode == dns.rcode.SERVFAIL:
                return DnsStatus.SERVFAIL, "the server failed to answer (SERVFAIL)"
            return DnsStatus.ERROR, f"the server answered {dns.rcode.to_text(rcode)}"
    detail = "; ".join(str(error[3]) for error in errors if len(error) > 3) or str(exc)
    return DnsStatus.ERROR, f"no server answered: {detail}"


def _cname_chain(response: dns.message.Message | None, name: str) -> tuple[str, ...]:
    """The CNAME targets followed from ``name``, in order (DKIM selectors at Microsoft are CNAMEs)."""
    if response is None:
        return ()
    chain: list[str] = []
    current = dns.name.from_text(name)
    for _ in range(16):
        rrset = next(
            (r for r in response.answer if r.name == current and r.rdtype == dns.rdatatype.CNAME),
            None,
        )
        if rrset is None:
            break
        current = rrset[0].target
        chain.append(current.to_text(omit_final_dot=True))
    return tuple(chain)
