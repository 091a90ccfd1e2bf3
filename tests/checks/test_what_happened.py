"""Say only what happened: a finding claims only what the conversation shows.

With --allow-plaintext, a server that offers no login without TLS never got a password, and the
clear-text finding says so; a provider's rule labels only that provider's words; a port that answers
the mode probe with a TLS alert speaks TLS (a mode mismatch, not a timeout); and a slow greeting on a
STARTTLS port is awaited, never answered with a TLS handshake.
"""

from __future__ import annotations

import asyncio

import pytest

from inboxcheck._models import Severity, Status
from inboxcheck.checks.login import imap, smtp
from tests.peers import PeerCerts, PeerConn
from tests.scenarios import (
    USER,
    ImapScript,
    Run,
    SmtpScript,
    assert_bounded,
    assert_no_secret,
    peer,
    run_login,
)

TLS_HANDSHAKE_RECORD = 0x16


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


async def run_smtp(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=port, **changes)


async def run_imap(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(imap.CHECKS, "imap.login", certs, imap_port=port, **changes)


# --- the clear-text findings ---------------------------------------------------------------------


async def test_smtp_without_auth_before_tls_says_no_password_was_sent(certs: PeerCerts) -> None:
    # Exim and OpenSMTPD: no AUTH in the EHLO reply before STARTTLS.
    script = SmtpScript(extensions=("PIPELINING", "STARTTLS", "8BITMIME"))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_use_tls=False, allow_plaintext=True)
    assert run.codes == ["smtp.tls.disabled", "smtp.auth.unsupported"]
    disabled = run.finding("smtp.tls.disabled")
    assert disabled.evidence["credentials_sent"] is False  # True ("sent in clear text") before
    assert "sent in clear text" not in disabled.message
    assert "sent no password" in disabled.message
    assert not any(c.startswith(b"AUTH") for c in script.commands)
    assert_no_secret(server.received)


async def test_smtp_clear_text_login_says_the_password_was_sent(certs: PeerCerts) -> None:
    script = SmtpScript(extensions=("AUTH PLAIN LOGIN",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_use_tls=False, allow_plaintext=True)
    disabled = run.finding("smtp.tls.disabled")
    assert disabled.evidence["credentials_sent"] is True
    assert "sent in clear text" in disabled.message
    assert run.result.status is Status.FAIL
    assert run.result.details["authenticated_as"] == USER


async def test_imap_logindisabled_says_no_password_was_sent(certs: PeerCerts) -> None:
    # Cyrus: LOGINDISABLED on a connection that is not encrypted, and no SASL PLAIN either.
    script = ImapScript(greeting="* OK ready", capabilities="IMAP4rev1 LOGINDISABLED")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, allow_plaintext=True)
    assert run.codes == ["imap.tls.disabled", "imap.login_disabled"]
    disabled = run.finding("imap.tls.disabled")
    assert disabled.evidence["credentials_sent"] is False  # True ("sent in clear text") before
    assert "sent in clear text" not in disabled.message
    assert not any(b"LOGIN" in c or b"AUTHENTICATE" in c for c in script.commands)
    assert_no_secret(server.received)


async def test_imap_clear_text_login_says_the_password_was_sent(certs: PeerCerts) -> None:
    script = ImapScript(greeting="* OK ready", capabilities="IMAP4rev1 AUTH=PLAIN")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, allow_plaintext=True)
    assert run.finding("imap.tls.disabled").evidence["credentials_sent"] is True


# --- a provider's rule claims only its own words ---------------------------------------------------


async def test_a_cyrus_refusal_is_not_labelled_as_zimbras(certs: PeerCerts) -> None:
    tls = certs.server_context()
    script = ImapScript(implicit=True, login_reply="NO Login failed: authentication failure")
    async with peer(script, tls=tls) as server:
        run = await run_imap(server.port, certs)
    finding = run.finding("imap.auth.rejected")
    assert finding.evidence["rule"] == "generic.imap.login-failed"  # zimbra.imap.login-failed before


# --- the mode probe ----------------------------------------------------------------------------------


async def _tls_alert_to_any_hello(conn: PeerConn) -> None:
    """A TLS server that refuses every handshake with a fatal alert (handshake_failure)."""
    first = await conn.reader.read(5)
    if first[:1] == bytes([TLS_HANDSHAKE_RECORD]):
        await conn.send(b"\x15\x03\x03\x00\x02\x02\x28")
    await conn.until_closed()


async def test_a_tls_alert_to_the_probe_is_a_mode_mismatch_not_a_timeout(certs: PeerCerts) -> None:
    async with peer(_tls_alert_to_any_hello) as server:
        run = await run_smtp(server.port, certs, timeout=3)
    assert run.codes == ["smtp.tls.mode_mismatch"]  # smtp.connect.timeout before
    finding = run.finding("smtp.tls.mode_mismatch")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["observed"] == "implicit"
    assert "alert" in str(finding.evidence["tls_alert"])
    assert_no_secret(server.received)
    assert_bounded(run)


async def test_a_slow_greeting_on_a_starttls_port_is_awaited_not_probed(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())

    async def slow(conn: PeerConn) -> None:
        await asyncio.sleep(3.5)  # a greeting delayed by the server's own lookups
        await script(conn)

    async with peer(slow) as server:
        run = await run_smtp(server.port, certs, timeout=8)
    assert run.result.status is Status.PASS, run.result
    assert len(server.connections) == 1, "no second connection, no TLS handshake on the port"
    assert not server.cleartext.startswith(bytes([TLS_HANDSHAKE_RECORD]))
    assert run.result.traceback is None
