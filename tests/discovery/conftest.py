"""Scripted peers for discovery: SMTP and IMAP peers that refuse every password, a web peer serving
autoconfig over HTTPS, and a DNS peer (every name is 127.0.0.1; no MX, no SRV)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.peers import DnsPeer, Peer, PeerCerts, PeerConn

ADDRESS = "jane@peer.test"
PASSWORD = "Correct-Horse-Battery-9"
CERT_NAMES = ("autoconfig.peer.test", "peer.test", "mail.other.test")


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts(extra_names=CERT_NAMES)


async def smtp_script(conn: PeerConn, certs: PeerCerts) -> None:
    """STARTTLS on a plain port; AUTH offered only after TLS; every password refused."""
    await conn.send("220 mail.peer.test ESMTP\r\n")
    tls = False
    while line := await conn.line():
        verb = line.split(b" ", 1)[0].upper()
        if verb in (b"EHLO", b"HELO"):
            extra = "250-AUTH PLAIN LOGIN\r\n" if tls else "250-STARTTLS\r\n"
            await conn.send(f"250-mail.peer.test\r\n{extra}250 8BITMIME\r\n")
        elif verb == b"STARTTLS" and not tls:
            await conn.send("220 go ahead\r\n")
            await conn.start_tls(certs.server_context("good"))
            tls = True
        elif verb == b"AUTH":
            await conn.send("535 5.7.8 authentication failed\r\n")
        elif verb == b"QUIT":
            await conn.send("221 bye\r\n")
            return
        else:
            await conn.send("502 5.5.2 what\r\n")


async def imap_script(conn: PeerConn) -> None:
    """Implicit TLS; LOGIN offered; every password refused."""
    await conn.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
    while line := await conn.line():
        tag, _, rest = line.decode().partition(" ")
        command = rest.split(" ", 1)[0].upper()
        if command == "CAPABILITY":
            await conn.send(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
        elif command == "LOGOUT":
            await conn.send(f"* BYE\r\n{tag} OK bye\r\n")
            return
        elif command in ("LOGIN", "AUTHENTICATE"):
            await conn.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        else:
            await conn.send(f"{tag} BAD what\r\n")


def config_xml(host: str, smtp_port: int, imap_port: int, smtp_tls: str = "STARTTLS") -> str:
    return f"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="peer.test">
  <incomingServer type="imap"><hostname>{host}</hostname><port>{imap_port}</port>
    <socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
  <outgoingServer type="smtp"><hostname>{host}</hostname><port>{smtp_port}</port>
    <socketType>{smtp_tls}</socketType><username>%EMAILADDRESS%</username></outgoingServer>
</emailProvider></clientConfig>
"""


@dataclass
class Web:
    """An HTTPS peer answering every request with ``respond``; ``requests`` holds each request head."""

    peer: Peer
    requests: list[str]


def web_peer(
    certs: PeerCerts,
    respond: Callable[[PeerConn, str], Awaitable[None]],
    *,
    tls: bool = True,
) -> Web:
    requests: list[str] = []

    async def script(conn: PeerConn) -> None:
        if not tls:
            # What a plain-HTTP server says to a TLS handshake: a 400 in clear text.
            await conn.reader.read(1)
            await conn.send("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            return
        head: list[str] = []
        while line := await conn.line():
            head.append(line.decode("latin-1"))
        requests.append("\n".join(head))
        await respond(conn, "\n".join(head))

    return Web(Peer(script, tls=certs.server_context("good") if tls else None), requests)


def ok(body: str) -> Callable[[PeerConn, str], Awaitable[None]]:
    async def respond(conn: PeerConn, head: str) -> None:
        if "/.well-known/" in head.split("\n", 1)[0]:
            await conn.send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        data = body.encode()
        await conn.send(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )

    return respond


@dataclass
class Mail:
    smtp: Peer
    imap: Peer
    dns: DnsPeer


@pytest.fixture
async def mail(certs: PeerCerts) -> AsyncIterator[Mail]:
    async with (
        Peer(lambda conn: smtp_script(conn, certs)) as smtp,
        Peer(imap_script, tls=certs.server_context("good")) as imap,
        DnsPeer() as dns_peer,
    ):
        yield Mail(smtp, imap, dns_peer)
