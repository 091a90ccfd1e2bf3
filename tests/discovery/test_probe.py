"""The no-credential probe against scripted peers: each way an endpoint can fail to offer a login."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from inboxcheck._check import CheckContext
from inboxcheck._endpoint import Endpoint, TlsMode
from inboxcheck._models import Account
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._presets import load_presets
from inboxcheck.discovery.model import MailProtocol, ProbeResult
from inboxcheck.discovery.probe import probe_endpoint
from tests.helpers import custom_payload
from tests.peers import DnsPeer, Peer, PeerCerts, PeerConn

HOST = "mail.peer.test"


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


@pytest.fixture
async def dns_peer() -> AsyncIterator[DnsPeer]:
    async with DnsPeer(nxdomain=("nowhere.peer.test",)) as peer:
        yield peer


def context(dns_peer: DnsPeer, certs: PeerCerts) -> CheckContext:
    return CheckContext(
        Account.model_validate(custom_payload()),
        options=CheckOptions(nameservers=(parse_nameserver(dns_peer.nameserver),), timeout=2, deadline=20),
        presets=load_presets(),
        match=None,
        ssl_context=certs.client_context(),
    )


def smtp(*, starttls: bool, auth: bool, certs: PeerCerts, greeting: str = "220 hi\r\n"):  # type: ignore[no-untyped-def]
    async def script(conn: PeerConn) -> None:
        await conn.send(greeting)
        tls = False
        while line := await conn.line():
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                lines = ["250-hi"]
                if starttls and not tls:
                    lines.append("250-STARTTLS")
                if auth and (tls or not starttls):
                    lines.append("250-AUTH PLAIN")
                lines.append("250 8BITMIME")
                await conn.send("\r\n".join(lines) + "\r\n")
            elif verb == b"STARTTLS":
                await conn.send("220 go\r\n")
                await conn.start_tls(certs.server_context("good"))
                tls = True
            else:
                await conn.send("221 bye\r\n")
                return

    return script


async def test_smtp_starttls_with_auth_after_tls_works(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    async with Peer(smtp(starttls=True, auth=True, certs=certs)) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.SMTP, host=HOST, port=peer.port, tls=TlsMode.STARTTLS),
        )
    assert outcome.result is ProbeResult.AUTH_OFFERED, outcome.reason
    assert outcome.evidence["auth"] == ["PLAIN"]
    assert b"AUTH " not in peer.received  # offered, never used


async def test_smtp_without_starttls_is_no_tls(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    async with Peer(smtp(starttls=False, auth=True, certs=certs)) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.SMTP, host=HOST, port=peer.port, tls=TlsMode.STARTTLS),
        )
    assert outcome.result is ProbeResult.NO_TLS
    assert "STARTTLS" in outcome.reason


async def test_smtp_without_auth_is_no_auth(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    async with Peer(smtp(starttls=True, auth=False, certs=certs)) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.SMTP, host=HOST, port=peer.port, tls=TlsMode.STARTTLS),
        )
    assert outcome.result is ProbeResult.NO_AUTH


async def test_a_server_that_is_not_smtp_is_a_protocol_error(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    script = smtp(starttls=True, auth=True, certs=certs, greeting="SSH-2.0-OpenSSH_9.2\r\n")
    async with Peer(script) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.SMTP, host=HOST, port=peer.port, tls=TlsMode.STARTTLS),
        )
    assert outcome.result is ProbeResult.PROTOCOL_ERROR


@pytest.mark.parametrize(("kind", "what"), [("expired", "expired"), ("wrongname", "hostname")])
async def test_a_bad_certificate_is_tls_failed(
    dns_peer: DnsPeer, certs: PeerCerts, kind: str, what: str
) -> None:
    async def script(conn: PeerConn) -> None:
        await conn.send("* OK ready\r\n")
        await conn.until_closed()

    async with Peer(script, tls=certs.server_context(kind)) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.IMAP, host=HOST, port=peer.port, tls=TlsMode.IMPLICIT),
        )
    assert outcome.result is ProbeResult.TLS_FAILED
    assert what in outcome.reason.lower()


async def test_imap_login_disabled_even_after_tls_is_no_auth(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    async def script(conn: PeerConn) -> None:
        await conn.send("* OK ready\r\n")
        while line := await conn.line():
            tag = line.split(b" ", 1)[0].decode()
            await conn.send(f"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n{tag} OK done\r\n")

    async with Peer(script, tls=certs.server_context("good")) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.IMAP, host=HOST, port=peer.port, tls=TlsMode.IMPLICIT),
        )
    assert outcome.result is ProbeResult.NO_AUTH
    assert outcome.evidence["capabilities"] == ["IMAP4REV1", "LOGINDISABLED"]


async def test_imap_starttls_then_login(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    async def script(conn: PeerConn) -> None:
        await conn.send("* OK ready\r\n")
        tls = False
        while line := await conn.line():
            tag, _, command = line.decode().partition(" ")
            if command.upper() == "STARTTLS":
                await conn.send(f"{tag} OK go\r\n")
                await conn.start_tls(certs.server_context("good"))
                tls = True
            else:
                caps = "IMAP4rev1 AUTH=PLAIN" if tls else "IMAP4rev1 STARTTLS LOGINDISABLED"
                await conn.send(f"* CAPABILITY {caps}\r\n{tag} OK done\r\n")

    async with Peer(script) as peer:
        outcome = await probe_endpoint(
            context(dns_peer, certs),
            Endpoint(protocol=MailProtocol.IMAP, host=HOST, port=peer.port, tls=TlsMode.STARTTLS),
        )
    assert outcome.result is ProbeResult.AUTH_OFFERED, outcome.reason
    assert b"LOGIN " not in peer.received


async def test_an_unknown_name_and_a_closed_port(dns_peer: DnsPeer, certs: PeerCerts) -> None:
    ctx = context(dns_peer, certs)
    gone = await probe_endpoint(
        ctx, Endpoint(protocol=MailProtocol.SMTP, host="nowhere.peer.test", port=587, tls=TlsMode.STARTTLS)
    )
    assert gone.result is ProbeResult.NOT_FOUND
    async with Peer(smtp(starttls=True, auth=True, certs=certs)) as peer:
        port = peer.port
    closed = await probe_endpoint(
        ctx, Endpoint(protocol=MailProtocol.SMTP, host=HOST, port=port, tls=TlsMode.STARTTLS)
    )
    assert closed.result is ProbeResult.UNREACHABLE and closed.result.could_not_tell
