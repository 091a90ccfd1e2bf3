"""The delaying UDP proxy of ``bench/dns_bench.py --rtt-ms`` (run as ``dns_bench.py --proxy
LISTEN:TARGET:DELAY`` in a process of its own): every datagram held ``delay`` seconds each way."""

from __future__ import annotations

import asyncio
import socket
import sys


class _DelayProxy(asyncio.DatagramProtocol):
    """Holds every datagram ``delay`` seconds each way between the clients and NSD.

    One upstream socket for all queries, answers routed back by query id (rewritten when two
    clients' ids collide). The concurrency benchmark's proxy opens a socket per query, which on a
    busy two-core machine made the proxy, not the tools, the bottleneck at a thousand queries/s.
    """

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[bytes, tuple[str, int]]] = {}
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        self.next_id = (self.next_id + 1) & 0xFFFF
        qid = self.next_id
        self.pending[qid] = (data[:2], addr)
        forwarded = qid.to_bytes(2, "big") + data[2:]
        asyncio.get_running_loop().call_later(self.delay, self._send_up, forwarded)

    def _send_up(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.sendto(data, self.target)

    def answer(self, data: bytes) -> None:
        entry = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if entry is not None and self.transport is not None:
            original, addr = entry
            asyncio.get_running_loop().call_later(
                self.delay, self.transport.sendto, original + data[2:], addr
            )


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, proxy: _DelayProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12:
            self.proxy.answer(data)


async def run_proxy(spec: str) -> None:
    listen, target, delay = spec.split(":")
    loop = asyncio.get_running_loop()
    proxy = _DelayProxy(("127.0.0.1", int(target)), float(delay))
    front, _ = await loop.create_datagram_endpoint(lambda: proxy, local_addr=("127.0.0.1", int(listen)))
    upstream, _ = await loop.create_datagram_endpoint(lambda: _Upstream(proxy), family=socket.AF_INET)
    proxy.upstream = upstream
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    front.close()
    upstream.close()
