"""Free high ports on loopback, picked at start so several labs (and other work) can coexist."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence


def free_ports(addresses: Sequence[str], *, udp_too: Sequence[bool] = ()) -> list[int]:
    """One free TCP port per entry of ``addresses`` (bound on that address), all distinct.

    All sockets stay open until every port is chosen, so the kernel cannot hand out one port
    twice. Entries with ``udp_too[i]`` also need the same UDP port free (DNS serves both).
    The ports are released before the servers bind them: a tiny race, accepted for a test lab.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for index, address in enumerate(addresses):
            need_udp = index < len(udp_too) and udp_too[index]
            port = _grab(address, need_udp, held)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _grab(address: str, need_udp: bool, held: list[socket.socket]) -> int:
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.append(tcp)
        tcp.bind((address, 0))
        port: int = tcp.getsockname()[1]
        if not need_udp:
            return port
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.append(udp)
        with contextlib.suppress(OSError):
            udp.bind((address, port))
            return port
    raise OSError(f"no free TCP+UDP port pair on {address}")
