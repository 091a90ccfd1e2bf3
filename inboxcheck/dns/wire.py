"""The stub resolver behind every lookup. TXT, MX, A and AAAA, which every run asks, are read by hand;
any other type (SRV for discovery, PTR for reverse DNS) by dnspython's rdata parser.

Chosen by measurement over dnspython's resolver, a tuned dns.asyncquery path and aiodns (see
bench/README.md, "DNS"): dnspython's resolver spends most of its time outside the network, a socket
per query and a full parse of every section of every answer. This transport keeps one UDP socket per
server while queries are in flight (so a run holds one descriptor per server, however many lookups it
has open), matches answers to queries by id and question, and reads only the answer section, building
the dnspython rdata objects the checks use. A truncated answer is asked again over TCP.

dnspython remains the library for names (IDNA), record data and reading the system's resolver
configuration; its resolver is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdata import Rdata
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from inboxcheck._errors import LOCAL_SHORTAGE

__all__ = ["WireAnswer", "WireTransport", "system_servers"]


def system_servers() -> list[tuple[str, int]]:
    """The system's plain-DNS servers (``/etc/resolv.conf``, or the Windows registry), as dnspython
    reads them; none when the system has no configuration (every lookup then says so).

    Only the server list is read: dnspython's resolver never sends a query, and its module-wide
    default resolver is neither used nor changed."""
    import dns.nameserver
    import dns.resolver

    try:
        config = dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        return []
    servers: list[tuple[str, int]] = []
    for server in config.nameservers:
        if isinstance(server, str):
            servers.append((server, config.port))
        elif isinstance(server, dns.nameserver.Do53Nameserver):
            servers.append((server.address, server.port))
    return servers


_TYPES: Final = {"A": 1, "MX": 15, "TXT": 16, "AAAA": 28}  # read by hand: the hot path
_CNAME: Final = 5
_NOERROR, _SERVFAIL, _NXDOMAIN, _REFUSED = 0, 2, 3, 5
_RCODE_NAMES: Final = {1: "FORMERR", 4: "NOTIMP", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH"}
_MAX_IN_FLIGHT: Final = 256  # queries in flight per server
_RECEIVE_BUFFER: Final = 1 << 21
# EDNS0 (RFC 6891) with the 1232-byte payload DNS Flag Day 2020 settled on.
_OPT: Final = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


class _Unusual(Exception):
    """An answer this transport cannot read (malformed, or for another question)."""


class _Truncated(Exception):
    """The answer did not fit in a datagram (TC): ask again over TCP."""


@dataclass(frozen=True)
class WireAnswer:
    """The outcome of one lookup: ``status`` is one of ok, nxdomain, nodata, servfail, refused, error,
    timeout, cname_loop, resources (the values of :class:`~inboxcheck.dns.client.DnsStatus`)."""

    status: str
    rrset: dns.rrset.RRset | None = None
    canonical_name: str | None = None
    chain: tuple[str, ...] = ()
    error: str | None = None


class _Channel(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiters: dict[int, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) >= 12:
            waiter = self.waiters.get(int.from_bytes(data[:2], "big"))
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error (port unreachable) on the connected socket: it concerns the server, so
        # every query in flight to it fails the same way.
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(exc or ConnectionError("the UDP socket was closed"))


class _Server:
    """One nameserver; its socket is open only while queries to it are in flight."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.users = 0
        self.channel: _Channel | None = None
        self.opening: asyncio.Future[_Channel] | None = None
        self.limit: asyncio.Semaphore | None = None

    async def exchange(self, query: bytes, *, resend_after: float) -> bytes:
        """Send ``query`` (without its id) and wait for the matching answer, sending it again after
        ``resend_after`` seconds of silence (UDP may drop it); the caller bounds the total time."""
        if self.limit is None:
            self.limit = asyncio.Semaphore(_MAX_IN_FLIGHT)
        async with self.limit:
            self.users += 1
            try:
                channel = await self._open()
                qid = secrets.randbits(16)
                while qid in channel.waiters:
                    qid = secrets.randbits(16)
                loop = asyncio.get_running_loop()
                waiter: asyncio.Future[bytes] = loop.create_future()
                channel.waiters[qid] = waiter
                wire = qid.to_bytes(2, "big") + query
                transport = channel.transport
                assert transport is not None
                timer: asyncio.TimerHandle | None = None

                def send() -> None:
                    nonlocal timer
                    if not waiter.done() and not transport.is_closing():
                        transport.sendto(wire)
                        timer = loop.call_later(resend_after, send)

                try:
                    send()
                    return await waiter
                finally:
                    if timer is not None:
                        timer.cancel()
                    channel.waiters.pop(qid, None)
            finally:
                self.users -= 1
                if self.users == 0:
                    self._close()

    async def _open(self) -> _Channel:
        if self.channel is not None:
            return self.channel
        if self.opening is None:
            self.opening = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self.opening)

    async def _connect(self) -> _Channel:
        loop = asyncio.get_running_loop()
        try:
            transport, channel = await loop.create_datagram_endpoint(
                _Channel, remote_addr=self.address, family=self.family
            )
        finally:
            self.opening = None
        channel.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Many answers can arrive at once; the default buffer (about 200 kB) would drop some.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        self.channel = channel
        if self.users == 0:  # everyone who wanted it gave up (timed out) while it opened
            self._close()
        return channel

    def _close(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()


class WireTransport:
    """Asks the servers in order, like dnspython's resolver: on SERVFAIL, REFUSED or a network error
    the next one is tried; the whole lookup has ``timeout`` seconds."""

    def __init__(self, servers: Sequence[tuple[str, int]], *, timeout: float) -> None:
        self.servers = [_Server(host, port) for host, port in servers]
        self.timeout = timeout
        # Like checkdmarc and dig, send again after a second of silence rather than wait out the
        # whole timeout for one lost datagram.
        self.resend_after = min(1.0, max(0.05, timeout / 3))

    async def resolve(self, name: str, rdtype: str) -> WireAnswer:
        qtype = _TYPES.get(rdtype) or _other_type(rdtype)
        if qtype is None:
            return WireAnswer("error", error=f"{rdtype!r} is not a DNS record type")
        try:
            labels = _labels(name)
        except _Unusual:
            return WireAnswer("error", error=f"{name!r} is not a valid DNS name")
        if not self.servers:
            return WireAnswer("error", error="no DNS server configured")
        question = _encode_question(labels, qtype)
        query = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01" + question + _OPT
        last: WireAnswer | None = None
        try:
            async with asyncio.timeout(self.timeout):
                for server in self.servers:
                    try:
                        response = await server.exchange(query, resend_after=self.resend_after)
                        try:
                            answer = _parse(response, question, labels, qtype)
                        except _Truncated:
                            response = await _tcp_exchange(server.address, query)
                            answer = _parse(response, question, labels, qtype)
                    except (_Unusual, _Truncated):
                        last = WireAnswer("error", error="the server sent an answer that cannot be read")
                        continue
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        if isinstance(exc, OSError) and exc.errno in LOCAL_SHORTAGE:
                            # No socket for this server is no socket for the next: this machine's
                            # shortage, not the servers' silence.
                            return WireAnswer("resources", error=f"this machine ran short: {exc.strerror}")
                        last = WireAnswer("error", error=f"no server answered: {exc or type(exc).__name__}")
                        continue
                    if answer.status in ("servfail", "refused"):
                        last = answer
                        continue
                    return answer
        except TimeoutError:
            return WireAnswer("timeout", error=f"no answer within {self.timeout:g} s")
        return last or WireAnswer("error", error="no server answered")


async def _tcp_exchange(address: tuple[str, int], query: bytes) -> bytes:
    """One query over TCP (RFC 7766), for an answer too large for a datagram."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        wire = secrets.randbits(16).to_bytes(2, "big") + query
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _labels(name: str) -> tuple[bytes, ...]:
    text = name.strip().rstrip(".")
    if not text or ".." in text:
        raise _Unusual
    try:
        if "\\" in text or not text.isascii():
            # Escapes and internationalised names: dnspython's parser encodes them, with IDNA 2008
            # named (its default was IDNA 2003 before dnspython 2.7), as validation uses.
            name_ = dns.name.from_text(text, idna_codec=dns.name.IDNA_2008_Practical)
            labels = name_.relativize(dns.name.root).labels
        else:
            labels = tuple(label.encode("ascii") for label in text.split("."))
    except (dns.exception.DNSException, UnicodeError):
        raise _Unusual from None
    sizes = list(map(len, labels))
    if min(sizes, default=1) < 1 or max(sizes, default=0) > 63 or sum(sizes) + len(sizes) > 254:
        raise _Unusual
    return labels


def _encode_question(labels: tuple[bytes, ...], qtype: int) -> bytes:
    return (
        b"".join(bytes([len(label)]) + label for label in labels)
        + b"\x00"
        + qtype.to_bytes(2, "big")
        + b"\x00\x01"
    )


def _read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The name at ``offset`` (following compression pointers) and the offset after it."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    while True:
        if offset >= len(data):
            raise _Unusual
        length = data[offset]
        if length >= 0xC0:
            if offset + 1 >= len(data) or jumps > 32:
                raise _Unusual
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            continue
        if length >= 0x40:
            raise _Unusual
        offset += 1
        if length == 0:
            return tuple(labels), (end if end >= 0 else offset)
        labels.append(data[offset : offset + length])
        offset += length


def _parse(data: bytes, question: bytes, labels: tuple[bytes, ...], qtype: int) -> WireAnswer:
    flags = int.from_bytes(data[2:4], "big")
    if not flags & 0x8000:
        raise _Unusual
    if flags & 0x0200:
        raise _Truncated
    rcode = flags & 0x000F
    qdcount, ancount = int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")
    if qdcount != 1 or data[12 : 12 + len(question)].lower() != question.lower():
        raise _Unusual
    if rcode == _NXDOMAIN:
        return WireAnswer("nxdomain")
    if rcode == _SERVFAIL:
        return WireAnswer("servfail", error="the server failed to answer (SERVFAIL)")
    if rcode == _REFUSED:
        return WireAnswer("refused", error="the server refused the query (REFUSED)")
    if rcode != _NOERROR:
        return WireAnswer("error", error=f"the server answered {_RCODE_NAMES.get(rcode, rcode)}")
    offset = 12 + len(question)
    records: list[tuple[tuple[bytes, ...], int, int, int, int]] = []
    for _ in range(ancount):
        owner, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise _Unusual
        rtype = int.from_bytes(data[offset : offset + 2], "big")
        ttl = int.from_bytes(data[offset + 4 : offset + 8], "big")
        rdlength = int.from_bytes(data[offset + 8 : offset + 10], "big")
        start = offset + 10
        offset = start + rdlength
        if offset > len(data):
            raise _Unusual
        records.append((tuple(label.lower() for label in owner), rtype, ttl, start, offset))
    current = tuple(label.lower() for label in labels)
    chain: list[str] = []
    visited = {current}
    for _ in range(16):
        cname = next((r for r in records if r[0] == current and r[1] == _CNAME), None)
        if cname is None or qtype == _CNAME:
            break
        target, _end = _read_name(data, cname[3])
        current = tuple(label.lower() for label in target)
        chain.append(_text(target))
        if current in visited:
            return WireAnswer("cname_loop", chain=tuple(chain), error="the CNAME chain leads back to itself")
        visited.add(current)
    owner_name = dns.name.Name((*current, b""))
    rdtype = dns.rdatatype.RdataType(qtype)
    rdatas = [
        rdata
        for owner, rtype, _ttl, start, end in records
        if owner == current and rtype == qtype and (rdata := _rdata(data, qtype, start, end)) is not None
    ]
    canonical = _text(current)
    if not rdatas:
        return WireAnswer("nodata", canonical_name=canonical, chain=tuple(chain))
    rrset = dns.rrset.RRset(owner_name, dns.rdataclass.IN, rdtype)
    ttl = min(r[2] for r in records if r[0] == current and r[1] == qtype)
    for rdata in rdatas:
        rrset.add(rdata, ttl)
    return WireAnswer("ok", rrset=rrset, canonical_name=canonical, chain=tuple(chain))


def _rdata(data: bytes, qtype: int, start: int, end: int) -> Rdata | None:
    """One record's data; None for a TXT record without strings, which holds no text (RFC 1035 asks
    for at least one) and is skipped rather than make the whole answer unreadable (RFC 7208 4.5 reads
    only the records that start with "v=spf1")."""
    body = data[start:end]
    try:
        if qtype == 16:
            if not body:
                return None
            strings: list[bytes] = []
            index = 0
            while index < len(body):
                length = body[index]
                strings.append(body[index + 1 : index + 1 + length])
                index += 1 + length
            if index != len(body):
                raise _Unusual
            return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
        if qtype == 15:
            if len(body) < 3:
                raise _Unusual
            exchange, _ = _read_name(data, start + 2)
            preference = int.from_bytes(body[:2], "big")
            target = dns.name.Name((*exchange, b""))
            return MX(dns.rdataclass.IN, dns.rdatatype.MX, preference, target)  # type: ignore[no-untyped-call]
        if qtype == 1 and len(body) == 4:
            return A(dns.rdataclass.IN, dns.rdatatype.A, socket.inet_ntop(socket.AF_INET, body))  # type: ignore[no-untyped-call]
        if qtype == 28 and len(body) == 16:
            address = socket.inet_ntop(socket.AF_INET6, body)
            return AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, address)  # type: ignore[no-untyped-call]
        if qtype not in _HAND_READ:
            # The whole message is passed so that compressed names (SRV and PTR targets) resolve.
            rdtype = dns.rdatatype.RdataType(qtype)
            return dns.rdata.from_wire(dns.rdataclass.IN, rdtype, data, start, end - start)
    except (ValueError, dns.exception.DNSException):
        raise _Unusual from None
    raise _Unusual


_HAND_READ: Final = frozenset(_TYPES.values())


def _other_type(rdtype: str) -> int | None:
    """The number of a record type read by dnspython; None for a name that is no record type or
    a meta-type (ANY, AXFR), which a stub resolver has no business asking."""
    try:
        number = dns.rdatatype.from_text(rdtype)
    except dns.exception.DNSException:
        return None
    return None if dns.rdatatype.is_metatype(number) else int(number)


def _text(labels: Sequence[bytes]) -> str:
    return ".".join(label.decode("ascii", "replace") for label in labels)
