"""The DNS transport against a scripted server: what it reads, and how it fails on what it cannot.

The real-server behaviour is in test_dns.py; here a tiny UDP (and TCP) server on loopback answers with
crafted bytes to reach the unusual cases.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from inboxcheck._options import Nameserver
from inboxcheck.dns.client import DnsClient, DnsStatus
from inboxcheck.dns.wire import WireTransport, system_servers

Responder = Callable[[bytes], list[bytes]]


class _Scripted(asyncio.DatagramProtocol):
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queries.append(data)
        assert self.transport is not None
        for answer in self.respond(data):
            self.transport.sendto(answer, addr)


async def serve(respond: Responder) -> tuple[asyncio.DatagramTransport, _Scripted, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Scripted(respond), local_addr=("127.0.0.1", 0)
    )
    return transport, protocol, transport.get_extra_info("sockname")[:2]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Responder], object]]:
    opened: list[asyncio.DatagramTransport] = []

    async def start(respond: Responder) -> tuple[_Scripted, tuple[str, int]]:
        transport, protocol, address = await serve(respond)
        opened.append(transport)
        return protocol, address

    yield start
    for transport in opened:
        transport.close()
    await asyncio.sleep(0)


def question_of(query: bytes) -> bytes:
    end = 12
    while query[end]:
        end += query[end] + 1
    return query[12 : end + 5]


def reply(
    query: bytes, *, flags: int = 0x8180, answers: bytes = b"", count: int = 0, question: bytes | None = None
) -> bytes:
    header = query[:2] + struct.pack("!HHHHH", flags, 1, count, 0, 0)
    return header + (question if question is not None else question_of(query)) + answers


def self_pointer(query: bytes) -> bytes:
    """A compressed name that points at itself: the first answer's owner, at its own offset."""
    offset = 12 + len(question_of(query))
    return bytes([0xC0 | offset >> 8, offset & 0xFF])


def txt_answer(text: bytes) -> bytes:
    rdata = bytes([len(text)]) + text
    return b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 300, len(rdata)) + rdata


async def test_reads_a_txt_answer(scripted: Callable[[Responder], object]) -> None:
    protocol, address = await scripted(lambda q: [reply(q, answers=txt_answer(b"v=spf1 -all"), count=1)])  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == "ok" and answer.rrset is not None
    assert [b"".join(r.strings) for r in answer.rrset] == [b"v=spf1 -all"]
    # EDNS0 is offered, recursion desired.
    assert protocol.queries[0][2:4] == b"\x01\x00" and protocol.queries[0].endswith(
        b"\x00\x00\x29\x04\xd0" + b"\x00" * 6
    )


@pytest.mark.parametrize(
    ("flags", "status"),
    [(0x8183, "nxdomain"), (0x8182, "servfail"), (0x8185, "refused"), (0x8181, "error"), (0x8180, "nodata")],
)
async def test_rcodes(scripted: Callable[[Responder], object], flags: int, status: str) -> None:
    _, address = await scripted(lambda q: [reply(q, flags=flags)])  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == status


async def test_next_server_after_servfail(scripted: Callable[[Responder], object]) -> None:
    _, failing = await scripted(lambda q: [reply(q, flags=0x8182)])  # type: ignore[misc]
    _, working = await scripted(lambda q: [reply(q, answers=txt_answer(b"ok"), count=1)])  # type: ignore[misc]
    answer = await WireTransport([failing, working], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == "ok"


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(
            lambda q: [reply(q, question=b"\x05other\x04test\x00\x00\x10\x00\x01")], id="other-question"
        ),
        pytest.param(lambda q: [reply(q, answers=b"\xc0\x0c\xc0", count=1)], id="cut-short"),
        pytest.param(
            lambda q: [reply(q, answers=self_pointer(q) + b"\x00" * 20, count=1)], id="pointer-loop"
        ),
    ],
)
async def test_unreadable_answers_are_errors(
    scripted: Callable[[Responder], object], respond: Responder
) -> None:
    _, address = await scripted(respond)  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == "error" and answer.error


async def test_a_truncated_answer_is_asked_again_over_tcp(scripted: Callable[[Responder], object]) -> None:
    big = b"x" * 250

    async def over_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(2), "big")
        query = await reader.readexactly(size)
        answer = reply(query, answers=txt_answer(big) * 8, count=8)
        writer.write(len(answer).to_bytes(2, "big") + answer)
        await writer.drain()
        writer.close()

    # The kernel chose the UDP port alone: its TCP twin may be taken (another test's connection), so
    # on a clash another UDP port is tried.
    for _ in range(50):
        protocol, address = await scripted(lambda q: [reply(q, flags=0x8380)])  # type: ignore[misc]
        try:
            server = await asyncio.start_server(over_tcp, *address)
            break
        except OSError:
            continue
    else:
        raise OSError("no free UDP+TCP port pair on 127.0.0.1")
    try:
        answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    finally:
        server.close()
        await server.wait_closed()
    assert answer.status == "ok" and answer.rrset is not None
    assert len(protocol.queries) == 1  # once over UDP, then TCP


async def test_a_truncated_answer_without_tcp_is_an_error(scripted: Callable[[Responder], object]) -> None:
    _, address = await scripted(lambda q: [reply(q, flags=0x8380)])  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == "error" and answer.error


async def test_answers_with_a_wrong_id_are_ignored(scripted: Callable[[Responder], object]) -> None:
    def wrong_then_right(query: bytes) -> list[bytes]:
        wrong = bytes([query[0] ^ 0xFF, query[1]]) + reply(query, flags=0x8183)[2:]
        return [wrong, reply(query, answers=txt_answer(b"right"), count=1)]

    _, address = await scripted(wrong_then_right)  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve("example.test", "TXT")
    assert answer.status == "ok"


async def test_lost_query_is_sent_again(scripted: Callable[[Responder], object]) -> None:
    seen: list[int] = []

    def drop_first(query: bytes) -> list[bytes]:
        seen.append(1)
        return [] if len(seen) == 1 else [reply(query, answers=txt_answer(b"second try"), count=1)]

    _, address = await scripted(drop_first)  # type: ignore[misc]
    answer = await WireTransport([address], timeout=0.6).resolve("example.test", "TXT")
    assert answer.status == "ok" and len(seen) == 2


async def test_silence_is_a_timeout(scripted: Callable[[Responder], object]) -> None:
    _, address = await scripted(lambda q: [])  # type: ignore[misc]
    answer = await WireTransport([address], timeout=0.3).resolve("example.test", "TXT")
    assert answer.status == "timeout"


async def test_meta_types_and_unknown_names_are_an_error_not_a_query(
    scripted: Callable[[Responder], object],
) -> None:
    protocol, address = await scripted(lambda q: [reply(q, flags=0x8183)])  # type: ignore[misc]
    host, port = address
    client = DnsClient([Nameserver(host=host, port=port)], timeout=1.0)
    for rdtype in ("ANY", "AXFR", "NOT-A-TYPE"):
        answer = await client.query("example.test", rdtype)
        assert answer.status is DnsStatus.ERROR and not answer.definite, rdtype
    assert protocol.queries == []
    # Other real types (SRV for discovery, PTR for reverse DNS) are asked like the hand-read four.
    assert (await client.query("example.test", "SRV")).status is DnsStatus.NXDOMAIN
    assert (await client.query("example.test", "TXT")).status is DnsStatus.NXDOMAIN
    assert len(protocol.queries) == 2


def test_the_client_asks_the_given_servers_only() -> None:
    client = DnsClient([Nameserver(host="127.0.0.1", port=5353)], timeout=1.0)
    assert [s.address for s in client.transport.servers] == [("127.0.0.1", 5353)]


def test_the_systems_servers_are_plain_addresses_and_ports() -> None:
    # Read from /etc/resolv.conf (or nothing, on a machine without one); no query is sent.
    for host, port in system_servers():
        assert isinstance(host, str) and host and 1 <= port <= 65535


@pytest.mark.parametrize("name", ["", "a..b", "x" * 64 + ".test", ("a" * 60 + ".") * 5 + "test"])
async def test_names_that_cannot_be_asked_are_errors(name: str) -> None:
    answer = await WireTransport([("127.0.0.1", 9)], timeout=0.1).resolve(name, "TXT")
    assert answer.status == "error" and answer.error


@pytest.mark.parametrize(("name", "wire"), [("bücher.test", b"\rxn--bcher-kva"), ("a\\.b.test", b"\x03a.b")])
async def test_escaped_and_international_names_are_encoded(
    scripted: Callable[[Responder], object], name: str, wire: bytes
) -> None:
    protocol, address = await scripted(lambda q: [reply(q, flags=0x8183)])  # type: ignore[misc]
    answer = await WireTransport([address], timeout=1.0).resolve(name, "TXT")
    assert answer.status == "nxdomain"
    assert protocol.queries[0][12:].startswith(wire)
