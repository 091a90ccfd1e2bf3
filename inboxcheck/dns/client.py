"""One DNS client per run: every lookup goes through it, each (name, type) is asked once.

A lookup ends in a definite answer (records, NXDOMAIN, no data), in "could not tell" (timeout,
SERVFAIL, REFUSED, a network error; or this machine short of descriptors, ``resources``), or in a CNAME
chain that leads back to itself. Checks must treat the last two as ``dns.unavailable`` (``run.resources``
for a local shortage) and ``dns.cname_loop`` and never as "record missing": an unreachable server
proves nothing about the domain, and a looping CNAME is a broken record.

The queries go out through :mod:`inboxcheck.dns.wire`, to the given servers (``--nameserver``) or
else the system's (``/etc/resolv.conf``); at most
``max_in_flight`` at once per client (a run, or a whole batch), however many names the checks expand.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import dns.rrset

from inboxcheck._models import ascii_domain
from inboxcheck._options import Nameserver
from inboxcheck.dns.wire import WireTransport, system_servers

# Enough to keep a batch's lookups overlapping on a slow network, few enough that a domain with
# thousands of MX hosts or SPF terms cannot open thousands of sockets or hold 100 MB of pending work.
MAX_IN_FLIGHT: Final = 64

__all__ = ["DnsAnswer", "DnsClient", "DnsStatus"]


class DnsStatus(StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, but has no record of this type
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    ERROR = "error"
    CNAME_LOOP = "cname_loop"  # the name's CNAME chain leads back to itself: a broken record
    # This machine ran short (too many open files) before the query left: nothing about the domain,
    # and never kept, so the next ask tries again.
    RESOURCES = "resources"

    @property
    def definite(self) -> bool:
        """True for a readable answer about the domain; False for "could not tell" and for a CNAME
        loop, where no record can be read (so neither may be reported as "missing")."""
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


class DnsClient:
    """Shares lookups between checks: concurrent asks for the same (name, type) await one query.

    One client serves a run, or a whole batch (where many accounts share a domain). ``max_entries``
    bounds what it remembers, oldest first, so a batch of any length runs in flat memory;
    ``max_in_flight`` bounds the queries on the wire at once. ``queries`` lists the lookups really
    sent (for tests); ``sent`` counts them, and is all a batch keeps (``record=False``).
    """

    def __init__(
        self,
        nameservers: Iterable[Nameserver] = (),
        *,
        timeout: float,
        max_entries: int = 50_000,
        max_in_flight: int = MAX_IN_FLIGHT,
        record: bool = True,
    ) -> None:
        servers = [(server.host, server.port) for server in nameservers] or system_servers()
        self.transport = WireTransport(servers, timeout=timeout)
        self.timeout = timeout
        self.max_entries = max_entries
        self.record = record
        self._in_flight = asyncio.Semaphore(max_in_flight)
        # A lookup in flight is its task (concurrent askers await it); a finished one is only its answer:
        # a done Task costs about as much again as the answer it holds, which adds up over a batch.
        self._entries: OrderedDict[tuple[str, str], asyncio.Task[DnsAnswer] | DnsAnswer] = OrderedDict()
        self._waiting: Counter[tuple[str, str]] = Counter()
        self.queries: list[tuple[str, str]] = []
        self.sent = 0

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The finished answer to (``name``, ``rdtype``) if the client has it, else None; asks nothing.

        What :meth:`query` would return at once, without a coroutine: a caller that bounds each
        lookup by a timer (the run's deadline) can skip the timer for an answer already there."""
        key = (_normalise(name), rdtype.upper())
        entry = self._entries.get(key)
        if not isinstance(entry, DnsAnswer):
            return None
        self._entries.move_to_end(key)
        return entry

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
            answer = task.result()
            if answer.status is DnsStatus.RESOURCES:
                del self._entries[key]
            else:
                self._entries[key] = answer

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            key, oldest = next(iter(self._entries.items()))
            if isinstance(oldest, asyncio.Task) and not oldest.done():
                return
            del self._entries[key]

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        async with self._in_flight:
            self.sent += 1
            if self.record:
                self.queries.append((name, rdtype))
            start = time.perf_counter()
            wire = await self.transport.resolve(name, rdtype)
            return DnsAnswer(
                name,
                rdtype,
                DnsStatus(wire.status),
                rrset=wire.rrset,
                canonical_name=wire.canonical_name if wire.rrset is not None else None,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
                error=wire.error,
                cname_chain=wire.chain,
            )


@functools.lru_cache(maxsize=8192)  # each name is asked as several types, and looked up twice an ask
def _normalise(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return ascii_domain(name)
    except (UnicodeError, ValueError):
        return name  # the transport turns it into an ERROR answer naming the bad label
