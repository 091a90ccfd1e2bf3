"""Discovery against scripted peers: a DNS peer (every name is 127.0.0.1, no MX, no SRV), a web
peer serving autoconfig over HTTPS, and SMTP/IMAP peers that record every byte a client sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from inboxcheck._endpoint import TlsMode
from inboxcheck._models import Severity, Verdict
from inboxcheck.discovery import CredentialUse, Discovery, MailProtocol, ProbeResult, SourceKind, discover
from tests.discovery.conftest import ADDRESS, PASSWORD, Mail, Web, config_xml, ok, web_peer
from tests.peers import DnsPeer, Peer, PeerCerts, PeerConn, secret_wire_forms


async def run(mail: Mail, certs: PeerCerts, web: Web | None = None, **kwargs: Any) -> Discovery:
    return await discover(
        ADDRESS,
        nameservers=[mail.dns.nameserver],
        ssl_context=certs.client_context(),
        timeout=2,
        deadline=20,
        autoconfig_port=web.peer.port if web else 9,
        **kwargs,
    )


async def test_autoconfig_alone_names_the_settings_and_is_fetched_over_verified_https(
    mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await run(mail, certs, web)
    assert result.verdict is Verdict.PASS, result.findings
    assert result.account is not None
    assert result.account["smtp_port"] == mail.smtp.port and result.account["imap_port"] == mail.imap.port
    assert result.account["smtp_use_tls"] is True and result.account["imap_use_ssl"] is True
    assert result.filled["smtp_host"].startswith("autoconfig https://autoconfig.peer.test:")
    smtp = result.chosen(MailProtocol.SMTP)
    assert (
        smtp is not None and smtp.source is SourceKind.AUTOCONFIG and smtp.result is ProbeResult.AUTH_OFFERED
    )
    assert f"Host: autoconfig.peer.test:{web.peer.port}" in web.requests[0]
    assert "emailaddress=jane@peer.test" in web.requests[0]
    # No password given: nothing secret crossed, and the SMTP peer saw STARTTLS before EHLO's AUTH.
    assert b"AUTH" not in mail.smtp.received
    assert result.exit_code == 0
    found = next(f for f in result.findings if f.code == "discover.found")
    assert found.severity is Severity.INFO and found.evidence["smtp"] == smtp.where


async def test_a_password_is_withheld_from_a_host_outside_the_domain(mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.other.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await run(mail, certs, web, smtp_password=PASSWORD)
    for form in secret_wire_forms(ADDRESS, PASSWORD):
        assert form not in mail.smtp.received and form not in mail.imap.received
    assert b"AUTH" not in mail.smtp.received and b"LOGIN" not in mail.imap.received
    assert mail.smtp.connections and mail.imap.connections  # probed, all the same
    for candidate in result.candidates:
        assert candidate.credential is CredentialUse.WITHHELD
        assert candidate.result is ProbeResult.AUTH_OFFERED
    codes = {f.code for f in result.findings}
    assert "discover.untrusted_host" in codes and "discover.could_not_tell" in codes
    untrusted = next(f for f in result.findings if f.code == "discover.untrusted_host")
    assert "--trust-host mail.other.test" in str(untrusted.fix)
    assert result.verdict is Verdict.ERROR and result.exit_code == 3
    assert PASSWORD not in result.model_dump_json()


async def test_trust_host_lets_the_password_go_there(mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.other.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await run(mail, certs, web, smtp_password=PASSWORD, trust_hosts=["mail.other.test"])
    assert b"AUTH" in mail.smtp.received
    smtp = next(c for c in result.candidates if c.protocol is MailProtocol.SMTP)
    assert smtp.credential is CredentialUse.SENT and smtp.result is ProbeResult.LOGIN_FAILED
    assert result.verdict is Verdict.FAIL and result.exit_code == 1
    assert "discover.nothing_works" in {f.code for f in result.findings}
    assert PASSWORD not in result.model_dump_json()


async def test_implicit_tls_smtp_off_465_is_passed_over_with_the_reason(mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", 4650, mail.imap.port, smtp_tls="SSL")))
    async with web.peer:
        result = await run(mail, certs, web)
    smtp = next(c for c in result.candidates if c.protocol is MailProtocol.SMTP)
    assert smtp.result is ProbeResult.NOT_EXPRESSIBLE and "465" in smtp.reason
    passed = next(f for f in result.findings if f.code == "discover.not_expressible")
    assert passed.severity is Severity.WARN and passed.evidence["port"] == 4650
    assert result.verdict is Verdict.FAIL  # SMTP: the only endpoint named cannot be written down


def _chunked_forever(chunk: bytes, delay: float) -> Callable[[PeerConn, str], Awaitable[None]]:
    async def respond(conn: PeerConn, head: str) -> None:
        await conn.send("HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n")
        for _ in range(100_000):
            await conn.send(chunk)
            if delay:
                await asyncio.sleep(delay)

    return respond


@pytest.mark.parametrize(
    ("respond", "code"),
    [
        (_chunked_forever(b"<!--" + b"x" * 16_000 + b"-->", 0), "discover.autoconfig.too_large"),
        (_chunked_forever(b"<", 0.2), "discover.autoconfig.timeout"),
    ],
    ids=["endless-body-without-length", "drip"],
)
async def test_a_huge_or_slow_file_is_cut_off_and_ignored(
    mail: Mail, certs: PeerCerts, respond: Callable[[PeerConn, str], Awaitable[None]], code: str
) -> None:
    web = web_peer(certs, respond)
    started = time.monotonic()
    async with web.peer:
        result = await run(mail, certs, web)
    assert code in {f.code for f in result.findings}
    assert not any(c.source is SourceKind.AUTOCONFIG for c in result.candidates)
    assert time.monotonic() - started < 18  # bounded by the step timeouts, not by the server


async def test_a_redirect_is_not_followed(mail: Mail, certs: PeerCerts) -> None:
    async def respond(conn: PeerConn, head: str) -> None:
        await conn.send(
            "HTTP/1.1 301 Moved\r\nLocation: http://evil.test/config.xml\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n"
        )

    web = web_peer(certs, respond)
    async with web.peer:
        result = await run(mail, certs, web)
    autoconfig = [lookup for lookup in result.lookups if lookup.source is SourceKind.AUTOCONFIG]
    assert [lookup.detail for lookup in autoconfig] == ["HTTP 301", "HTTP 301"]
    assert len(web.requests) == 2  # one per location; the Location was never fetched


async def test_plain_http_is_never_asked(mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)), tls=False)
    async with web.peer:
        result = await run(mail, certs, web)
    assert b"GET " not in web.peer.received  # only TLS handshakes arrived
    assert not any(c.source is SourceKind.AUTOCONFIG for c in result.candidates)
    assert "discover.autoconfig.tls" in {f.code for f in result.findings}


async def test_a_certificate_for_another_name_is_refused(mail: Mail) -> None:
    other = PeerCerts()  # its certificates do not name autoconfig.peer.test
    web = web_peer(other, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await discover(
            ADDRESS,
            nameservers=[mail.dns.nameserver],
            ssl_context=other.client_context(),
            timeout=2,
            deadline=20,
            autoconfig_port=web.peer.port,
            probe=False,
        )
    tls = [f for f in result.findings if f.code == "discover.autoconfig.tls"]
    assert tls and "hostname" in str(tls[0].evidence["detail"]).lower()
    assert web.requests == []


async def test_guesses_when_no_source_answers(mail: Mail, certs: PeerCerts) -> None:
    result = await run(mail, certs, None, probe=False)
    hosts = {(c.protocol, c.host, c.port, c.tls) for c in result.candidates}
    assert (MailProtocol.SMTP, "smtp.peer.test", 465, TlsMode.IMPLICIT) in hosts
    assert (MailProtocol.SMTP, "mail.peer.test", 587, TlsMode.STARTTLS) in hosts
    assert (MailProtocol.IMAP, "imap.peer.test", 993, TlsMode.IMPLICIT) in hosts
    assert all(c.source is SourceKind.GUESS and c.trusted for c in result.candidates)
    assert result.account is not None and result.account["smtp_host"] == "smtp.peer.test"
    assert result.verdict is Verdict.ERROR and "discover.not_probed" in {f.code for f in result.findings}


async def test_a_preset_domain_resolves_offline_quickly() -> None:
    async with DnsPeer() as dns_peer:
        started = time.monotonic()
        result = await discover("someone@gmail.com", nameservers=[dns_peer.nameserver], probe=False)
        elapsed = time.monotonic() - started
    assert dns_peer.queries == []  # no DNS, no web, no mail server: the preset alone
    assert elapsed < 0.2, elapsed
    assert result.preset == "google-workspace"
    assert result.account is not None
    assert (result.account["smtp_host"], result.account["smtp_port"]) == ("smtp.gmail.com", 587)
    assert (result.account["imap_host"], result.account["imap_port"]) == ("imap.gmail.com", 993)
    assert result.account["inbox_type"] == "GOOGLE_WORKSPACE"
    assert result.filled["smtp_host"] == "preset google-workspace (address domain gmail.com)"


BOMB = """<?xml version="1.0"?>
<!DOCTYPE clientConfig [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<clientConfig version="1.1"><emailProvider id="x"><displayName>&b;</displayName>
</emailProvider></clientConfig>
"""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("<clientConfig><emailProvider>", "discover.autoconfig.malformed"),
        (BOMB, "discover.autoconfig.forbidden"),
    ],
    ids=["malformed", "bomb"],
)
async def test_a_malformed_file_or_an_xml_bomb_is_ignored(
    mail: Mail, certs: PeerCerts, body: str, code: str
) -> None:
    web = web_peer(certs, ok(body))
    async with web.peer:
        result = await run(mail, certs, web, probe=False)
    problem = next(f for f in result.findings if f.code == code)
    assert problem.severity is Severity.WARN and "autoconfig.peer.test" in str(problem.evidence["url"])
    assert not any(c.source is SourceKind.AUTOCONFIG for c in result.candidates)


async def test_a_cancelled_discovery_leaves_no_task_and_sends_nothing_more(certs: PeerCerts) -> None:
    async def late(conn: PeerConn) -> None:
        await asyncio.sleep(0.8)
        await conn.send("220 late\r\n")
        await conn.until_closed()

    async with Peer(late) as smtp, Peer(late) as imap, DnsPeer() as dns_peer:
        xml = config_xml("mail.peer.test", smtp.port, imap.port)
        web = web_peer(certs, ok(xml))
        async with web.peer:
            before = asyncio.all_tasks()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    discover(
                        ADDRESS,
                        nameservers=[dns_peer.nameserver],
                        ssl_context=certs.client_context(),
                        timeout=5,
                        autoconfig_port=web.peer.port,
                    ),
                    0.5,
                )
            servers = smtp._tasks | imap._tasks | web.peer._tasks
            left = {t for t in asyncio.all_tasks() - before - servers if not t.done()}
            assert left == set(), [t.get_coro() for t in left]
            assert smtp.connections and imap.connections  # cut mid-probe, not before
            sent = (smtp.received, imap.received)  # an implicit-TLS probe's ClientHello at most
            await asyncio.sleep(1.5)
            assert (smtp.received, imap.received) == sent
            assert b"EHLO" not in smtp.received


def test_discover_sync_refuses_inside_a_loop() -> None:
    from inboxcheck import InboxcheckError, discover_sync

    async def inside() -> None:
        with pytest.raises(InboxcheckError):
            discover_sync(ADDRESS, probe=False)

    asyncio.run(inside())


async def test_an_internationalised_domain_is_asked_in_idna(mail: Mail) -> None:
    idn = await discover(
        "jane@bücher.peer.test", nameservers=[mail.dns.nameserver], timeout=2, autoconfig_port=9, probe=False
    )
    assert idn.account is not None
    assert idn.account["smtp_host"] == "smtp.xn--bcher-kva.peer.test"
    assert ("_submissions._tcp.xn--bcher-kva.peer.test", "SRV") in mail.dns.queries
