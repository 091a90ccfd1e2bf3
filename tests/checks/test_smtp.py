"""The SMTP login check against scripted peers: TLS modes, certificates, hostile servers, replies.

Every scenario asserts its finding, that it ended within the bound, and what the peer received (no
credential where none may go). The lab's real Postfix is exercised in ``tests/checks/test_login_lab.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from inboxcheck._models import Severity, Status
from inboxcheck.checks.login import smtp
from inboxcheck.checks.login.net import Attempt, ConnectFailure
from tests.peers import DnsPeer, PeerCerts, PeerConn
from tests.scenarios import (
    ELAPSED_BOUND,
    IMPLICIT_SMTP_PORT,
    USER,
    Run,
    SmtpScript,
    assert_bounded,
    assert_no_secret,
    check_context,
    free_port,
    peer,
    run_login,
)


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


async def run_smtp(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=port, **changes)


@pytest.fixture
def port_465() -> int:
    """Port 465 on loopback, where the project's rule puts implicit TLS (root on the CI machine)."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", IMPLICIT_SMTP_PORT))
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.1:465 here ({exc})")
    return IMPLICIT_SMTP_PORT


# --- the good paths ---------------------------------------------------------------------------


async def test_starttls_login_passes_and_sends_the_password_only_after_tls(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.codes == []
    assert run.detail("tls")["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert run.result.details["auth_mechanism"] == "PLAIN"
    assert b"STARTTLS" in server.cleartext
    assert_no_secret(server.cleartext)
    assert b"AUTH PLAIN" in server.received
    assert not any(c.startswith(b"MAIL") for c in script.commands), "a check must never send mail"
    assert script.commands[-1] == b"QUIT"
    assert_bounded(run)


async def test_implicit_tls_on_465_passes(certs: PeerCerts, port_465: int) -> None:
    script = SmtpScript(extensions=("AUTH PLAIN LOGIN",))
    async with peer(script, tls=certs.server_context(), port=port_465):
        run = await run_smtp(port_465, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["tls_mode"] == "implicit"
    assert b"STARTTLS" not in b"".join(script.commands)
    assert_bounded(run)


async def test_auth_login_is_used_when_plain_is_not_offered(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=("AUTH LOGIN",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "LOGIN"
    assert_no_secret(server.cleartext)


async def test_host_name_is_resolved_through_the_given_nameserver(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    async with DnsPeer() as dns, peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_host="mail.peer.test", nameservers=[dns.nameserver])
    assert run.result.status is Status.PASS, run.result
    assert ("mail.peer.test", "A") in dns.queries
    assert run.detail("resolution")["addresses"] == ["127.0.0.1"]
    assert run.result.details["attempts"] == [
        {"address": "127.0.0.1", "port": server.port, "result": "connected"}
    ]


# --- certificates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("expired", "smtp.tls.cert_expired"),
        ("selfsigned", "smtp.tls.cert_untrusted"),
        ("wrongname", "smtp.tls.hostname_mismatch"),
        ("notyet", "smtp.tls.cert_not_yet_valid"),
    ],
)
async def test_a_bad_certificate_fails_and_no_credential_is_sent(
    certs: PeerCerts, kind: str, code: str
) -> None:
    script = SmtpScript(tls=certs.server_context(kind))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding(code)
    assert finding.severity is Severity.FAIL
    assert "sent no credentials" in finding.message
    assert_no_secret(server.received)
    assert b"AUTH" not in server.received
    assert_bounded(run)
    if kind == "expired":
        assert -32 <= finding.evidence["days_to_expiry"] <= -29
        assert finding.evidence["verify_code"] == 10
    if kind == "selfsigned":
        assert finding.evidence["self_signed"] is True
        assert "self-signed" in finding.message
    if kind == "wrongname":
        assert finding.evidence["cert_names"] == ["other.invalid-name.test"]
        assert "127.0.0.1" in finding.message


async def test_a_certificate_expiring_soon_is_a_warning_with_the_days_left(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context("expiring"))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.tls.cert_expiring")
    assert finding.severity is Severity.WARN
    assert finding.evidence["days_to_expiry"] == 5
    assert run.result.status is Status.WARN
    assert run.result.details["authenticated_as"] == USER


# --- TLS refused or off -------------------------------------------------------------------------


async def test_no_starttls_offered_sends_no_credential(certs: PeerCerts) -> None:
    script = SmtpScript(extensions=("PIPELINING", "AUTH PLAIN LOGIN"))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.starttls.unavailable")
    assert finding.severity is Severity.FAIL
    assert not any(c.startswith(b"AUTH") for c in script.commands)
    assert_no_secret(server.received)
    assert_bounded(run)


async def test_tls_off_fails_and_sends_no_password_without_allow_plaintext(certs: PeerCerts) -> None:
    script = SmtpScript(extensions=("AUTH PLAIN LOGIN",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_use_tls=False)
    finding = run.finding("smtp.tls.disabled")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["credentials_sent"] is False
    assert not any(c.startswith(b"AUTH") for c in script.commands)
    assert_no_secret(server.received)


async def test_tls_off_with_allow_plaintext_logs_in_in_clear(certs: PeerCerts) -> None:
    script = SmtpScript(extensions=("AUTH PLAIN LOGIN",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_use_tls=False, allow_plaintext=True)
    assert run.codes == ["smtp.tls.disabled"]
    assert run.finding("smtp.tls.disabled").evidence["credentials_sent"] is True
    assert run.result.details["authenticated_as"] == USER
    assert any(c.startswith(b"AUTH PLAIN") for c in script.commands)


async def test_a_starttls_refusal_is_explained(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(), starttls_reply="454 4.7.0 TLS not available due to local problem"
    )
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.starttls.failed")
    assert finding.evidence["reply"] == "454 4.7.0 TLS not available due to local problem"
    assert finding.severity is Severity.ERROR, "a 4yz reply is temporary"
    assert_no_secret(server.received)


# --- logins -------------------------------------------------------------------------------------


async def test_wrong_password_is_rejected_with_the_reply_as_evidence(certs: PeerCerts) -> None:
    reply = "535 5.7.8 Error: authentication failed: authentication failure"
    script = SmtpScript(tls=certs.server_context(), auth_reply=reply)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.auth.rejected")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["reply"] == reply
    assert finding.evidence["enhanced_code"] == "5.7.8"
    assert run.result.status is Status.FAIL


@pytest.mark.parametrize(
    ("offered", "expect"),
    [
        (("PIPELINING",), "no way to log in"),
        (("AUTH XOAUTH2 OAUTHBEARER",), "OAuth2"),
        (("AUTH CRAM-MD5",), "CRAM-MD5"),
    ],
)
async def test_no_usable_auth_mechanism(certs: PeerCerts, offered: tuple[str, ...], expect: str) -> None:
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=offered)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.auth.unsupported")
    assert expect in finding.message
    assert not any(c.startswith(b"AUTH") for c in script.commands)
    assert_no_secret(server.received)


# --- connection failures ------------------------------------------------------------------------


async def test_refused_connection(certs: PeerCerts) -> None:
    run = await run_smtp(free_port(), certs)
    finding = run.finding("smtp.connect.refused")
    # A refusal is a definite fact: nothing listens there (the wrong port).
    assert finding.severity is Severity.FAIL
    assert finding.evidence["attempts"][0]["result"] == "refused"
    assert_bounded(run)


@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_an_ipv6_host_is_written_in_brackets_before_its_port(certs: PeerCerts, host: str) -> None:
    port = free_port()
    run = await run_smtp(port, certs, smtp_host=host)
    finding = run.finding("smtp.connect.refused")
    # "::1:25" reads as the address ::1:25; only the bracketed form is unambiguous (RFC 3986).
    assert f"[::1]:{port}" in finding.message
    assert f" ::1:{port}" not in finding.message + run.result.summary


async def test_refused_connection_names_the_providers_ports(certs: PeerCerts) -> None:
    async with DnsPeer() as dns:
        run = await run_smtp(
            free_port(), certs, smtp_host="smtp.mail.us-east-1.awsapps.com", nameservers=[dns.nameserver]
        )
    finding = run.finding("smtp.connect.refused")
    assert "only offers port 465" in finding.message


async def test_connect_timeout_is_could_not_tell(certs: PeerCerts) -> None:
    # A listening socket with a full backlog: Linux drops further SYNs, so connect() never completes.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        extra = [filler, socket.socket(), socket.socket()]
        try:
            for sock in extra:
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
            run = await run_smtp(port, certs, timeout=0.5)
        finally:
            for sock in extra:
                sock.close()
    finding = run.finding("smtp.connect.timeout")
    assert finding.severity is Severity.ERROR
    assert run.result.status is Status.ERROR
    assert_bounded(run)


async def test_unresolvable_host(certs: PeerCerts) -> None:
    async with DnsPeer(nxdomain=("nosuch.peer.test",)) as dns:
        run = await run_smtp(587, certs, smtp_host="nosuch.peer.test", nameservers=[dns.nameserver])
    finding = run.finding("smtp.connect.unresolvable")
    assert finding.severity is Severity.FAIL
    assert "nxdomain" in finding.evidence["detail"]


# --- hostile peers ------------------------------------------------------------------------------


async def _garbage(conn: PeerConn) -> None:
    await conn.send(b"\x00\xff\xfeHELLO? this is not smtp\r\n")
    await conn.until_closed()


async def _silent(conn: PeerConn) -> None:
    await conn.until_closed()


async def _hang_up(conn: PeerConn) -> None:
    conn.abort()


async def _megabyte_line(conn: PeerConn) -> None:
    await conn.send(b"220 " + b"x" * (1 << 20) + b"\r\n")
    await conn.until_closed()


async def _drop_mid_handshake(conn: PeerConn) -> None:
    await conn.reader.read(10)  # the start of the ClientHello
    conn.abort()


async def _endless_multiline_greeting(conn: PeerConn) -> None:
    for batch in range(1000):  # bounded (~30 MB): far more than any client accepts, never a final line
        await conn.send(
            "".join(f"220-still greeting you, line {batch}.{i}\r\n" for i in range(1000)).encode()
        )


async def _stall_after_banner(conn: PeerConn) -> None:
    await conn.send(b"220 mail.peer.test ESMTP\r\n")
    await conn.until_closed()


async def _slow_multiline_greeting(conn: PeerConn) -> None:
    for i in range(1000):  # paced output, not synchronisation: a greeting that never finishes
        await conn.send(f"220-line {i}\r\n".encode())
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("script", "code", "severity"),
    [
        (_garbage, "smtp.protocol.error", Severity.FAIL),
        (_silent, "smtp.connect.timeout", Severity.ERROR),
        (_megabyte_line, "smtp.protocol.error", Severity.FAIL),
        (_endless_multiline_greeting, "smtp.protocol.error", Severity.FAIL),
        (_slow_multiline_greeting, "smtp.connect.timeout", Severity.ERROR),
        (_stall_after_banner, "smtp.protocol.timeout", Severity.ERROR),
        (_hang_up, "smtp.protocol.error", Severity.ERROR),
    ],
    ids=[
        "garbage-banner",
        "banner-never-comes",
        "1mb-line",
        "endless-multiline",
        "slow-multiline",
        "stall",
        "hang-up",
    ],
)
async def test_hostile_peer_ends_in_its_finding(
    certs: PeerCerts, script: object, code: str, severity: Severity
) -> None:
    async with peer(script) as server:  # type: ignore[arg-type]
        run = await run_smtp(server.port, certs)
    finding = run.finding(code)
    assert finding.severity is severity
    assert_bounded(run)
    assert_no_secret(server.received)
    assert server.errors == []


async def test_connection_dropped_mid_starttls_handshake(certs: PeerCerts) -> None:
    async def script(conn: PeerConn) -> None:
        await conn.send(b"220 mail.peer.test ESMTP\r\n")
        await conn.line()
        await conn.send(b"250-mail.peer.test\r\n250 STARTTLS\r\n")
        await conn.line()
        await conn.send(b"220 go ahead\r\n")
        await _drop_mid_handshake(conn)

    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.finding("smtp.tls.handshake_failed").severity is Severity.FAIL
    assert_bounded(run)
    assert_no_secret(server.received)


async def test_connection_dropped_mid_implicit_handshake(certs: PeerCerts, port_465: int) -> None:
    async with peer(_drop_mid_handshake, port=port_465) as server:
        run = await run_smtp(port_465, certs)
    assert run.finding("smtp.tls.handshake_failed").severity is Severity.FAIL
    assert_bounded(run)
    assert_no_secret(server.received)


async def test_a_plain_server_on_465_is_a_mode_mismatch_that_names_the_starttls_port(
    certs: PeerCerts, port_465: int
) -> None:
    script = SmtpScript()
    async with peer(script, port=port_465) as server:
        run = await run_smtp(port_465, certs, timeout=10)
    assert run.codes == ["smtp.tls.mode_mismatch"]
    finding = run.finding("smtp.tls.mode_mismatch")
    assert finding.evidence["observed"] == "plain"
    assert finding.evidence["greeting"] == script.banner
    assert "587" in (finding.fix or "") and "STARTTLS" in (finding.fix or "")
    assert run.elapsed < ELAPSED_BOUND
    assert_no_secret(server.received)


async def test_a_server_that_greets_in_neither_mode_is_still_a_handshake_failure(
    certs: PeerCerts, port_465: int
) -> None:
    async def not_smtp(conn: PeerConn) -> None:
        await conn.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with peer(not_smtp, port=port_465) as server:
        run = await run_smtp(port_465, certs)
    finding = run.finding("smtp.tls.handshake_failed")
    assert "STARTTLS" in (finding.fix or "")
    assert_no_secret(server.received)


async def test_plain_smtp_on_465_without_tls_times_out_with_a_hint(certs: PeerCerts, port_465: int) -> None:
    async with peer(_silent, port=port_465):
        run = await run_smtp(port_465, certs, smtp_use_tls=False)
    finding = run.finding("smtp.connect.timeout")
    assert "465" in finding.message


async def test_a_check_cut_by_the_run_deadline_closes_its_connection(certs: PeerCerts) -> None:
    async with peer(_stall_after_banner) as server:
        run = await run_smtp(server.port, certs, timeout=30, deadline=0.5)
    # Each step's timeout is cut by the deadline, so the check may end on its own timeout just before
    # the runner cancels it: both are right; what matters is that it ends and closes everything.
    assert run.codes in (["run.deadline_exceeded"], ["smtp.protocol.timeout"])
    assert run.elapsed < ELAPSED_BOUND
    await asyncio.sleep(0)  # let the aborted transport's close callback run before the loop ends


async def test_auth_offered_only_after_starttls_says_to_turn_tls_on(certs: PeerCerts) -> None:
    script = SmtpScript(extensions=("STARTTLS",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_use_tls=False, allow_plaintext=True)
    finding = run.finding("smtp.auth.unsupported")
    assert "only after" in finding.message
    assert "smtp_use_tls on" in (finding.fix or "")
    assert_no_secret(server.received)


async def test_every_address_is_tried_in_turn_and_kept_as_evidence(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    async with peer(script) as server, DnsPeer(addresses=("127.0.0.3", "127.0.0.1")) as dns:
        # Nothing listens on 127.0.0.3 at this port: refused, then 127.0.0.1 answers.
        run = await run_smtp(server.port, certs, smtp_host="mail.peer.test", nameservers=[dns.nameserver])
    assert run.result.status is Status.PASS, run.result
    assert [a["result"] for a in run.detail("attempts")] == ["refused", "connected"]
    assert {a["address"] for a in run.detail("attempts")} == {"127.0.0.3", "127.0.0.1"}


async def test_a_greeting_that_refuses_service(certs: PeerCerts) -> None:
    script = SmtpScript(banner="554 5.7.1 mail.peer.test: connections from your address are not accepted")
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.connect.rejected")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["reply"] == script.banner
    assert_no_secret(server.received)


async def test_a_temporary_421_greeting_is_could_not_tell(certs: PeerCerts) -> None:
    script = SmtpScript(banner="421 4.3.2 mail.peer.test: too busy, try again later")
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.finding("smtp.connect.rejected").severity is Severity.ERROR
    assert_no_secret(server.received)


async def test_an_unknown_auth_refusal_is_reported_verbatim(certs: PeerCerts) -> None:
    reply = "550 5.7.1 Not today"
    script = SmtpScript(tls=certs.server_context(), auth_reply=reply)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.auth.rejected")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["reply"] == reply
    assert "rule" not in finding.evidence
    del server


@pytest.mark.parametrize(
    "reply",
    [
        "454 4.7.0 Temporary authentication failure",
        "421 4.7.0 Try again later, closing connection.",
        "454 4.7.0 Try later",
        # The words of a wrong password under a temporary class: the class decides.
        "451 4.7.8 Error: authentication failed: temporary lookup failure",
    ],
)
async def test_a_temporary_reply_to_auth_is_could_not_tell_not_rejected(certs: PeerCerts, reply: str) -> None:
    script = SmtpScript(tls=certs.server_context(), auth_reply=reply)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.codes == ["smtp.reply.temporary"]
    finding = run.finding("smtp.reply.temporary")
    assert finding.severity is Severity.ERROR
    assert finding.evidence["reply"] == reply
    assert finding.evidence["stage"] == "auth"
    assert run.result.status is Status.ERROR
    assert run.report.exit_code == 3
    assert_bounded(run)
    del server


async def test_a_temporary_reply_to_ehlo_is_could_not_tell(certs: PeerCerts) -> None:
    async def busy(conn: PeerConn) -> None:
        await conn.send(b"421 4.7.0 mail.peer.test Try again later, closing connection.\r\n")

    script = SmtpScript(tls=certs.server_context(), ehlo_hook=busy)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.reply.temporary")
    assert finding.severity is Severity.ERROR
    assert finding.evidence["stage"] == "ehlo"
    assert "smtp.protocol.error" not in run.codes
    assert_no_secret(server.received)


@pytest.mark.parametrize("inbox_type", ["CUSTOM_SMTP", "GOOGLE_WORKSPACE"])
async def test_googles_app_password_reply_is_known_on_any_host(certs: PeerCerts, inbox_type: str) -> None:
    reply = (
        "534-5.7.9 Application-specific password required. For more information, go to\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor x - gsmtp"
    )
    script = SmtpScript(tls=certs.server_context(), auth_reply=reply)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, inbox_type=inbox_type)
    assert run.codes == ["smtp.auth.app_password_required"]
    assert (
        run.finding("smtp.auth.app_password_required").evidence["rule"] == "google.smtp.app-password-required"
    )
    del server


async def test_a_password_that_cannot_be_encoded_is_a_finding(certs: PeerCerts) -> None:
    # JSON can carry a lone surrogate ("\ud800"); it has no UTF-8 form, so no login can send it.
    script = SmtpScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_password="\ud800abc")
    assert run.codes == ["smtp.auth.unsendable"]
    assert run.result.traceback is None
    assert not any(c.startswith(b"AUTH") for c in script.commands)


async def test_a_nul_in_the_username_is_refused_before_auth(certs: PeerCerts) -> None:
    # SASL PLAIN separates its parts with NUL: "sam\0x" would log in as someone else, or as nobody.
    script = SmtpScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_smtp(server.port, certs, smtp_username="sam\0admin")
    assert run.codes == ["smtp.auth.unsendable"]
    assert not any(c.startswith(b"AUTH") for c in script.commands)
    del server


async def test_an_unreachable_network_is_could_not_tell() -> None:
    # A route that does not exist cannot be made on loopback; the finding is built from the attempt.
    login = smtp._SmtpLogin(check_context())
    attempt = Attempt("2001:db8::1", 587, ConnectFailure.UNREACHABLE, "Network is unreachable")
    login._not_connected(ConnectFailure.UNREACHABLE, [attempt.as_json()])
    (finding,) = login.out.findings
    assert finding.code == "smtp.connect.failed"
    assert finding.severity is Severity.ERROR
    login.tls_ready.cancel()


# --- the TLS mode on the wrong port ------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [True, False], ids=["starttls", "tls-off"])
async def test_implicit_tls_on_a_port_configured_for_a_greeting_is_a_mode_mismatch(
    certs: PeerCerts, use_tls: bool
) -> None:
    script = SmtpScript()
    async with peer(script, tls=certs.server_context()) as server:
        # Off port 465 the greeting is awaited for the step timeout (less the probe's end) first.
        run = await run_smtp(server.port, certs, smtp_use_tls=use_tls, timeout=3)
    assert run.codes == ["smtp.tls.mode_mismatch"]
    finding = run.finding("smtp.tls.mode_mismatch")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["observed"] == "implicit"
    assert finding.evidence["configured"] == ("starttls" if use_tls else "none")
    assert "465" in (finding.fix or "") and "587" in (finding.fix or "")
    assert run.elapsed < ELAPSED_BOUND, f"took {run.elapsed:.2f} s with --timeout 3"
    assert script.commands == [], "only a handshake was tried: no command, no credential"
    assert_no_secret(server.received)


async def test_tls_off_on_465_speaking_implicit_tls_says_turn_tls_on(certs: PeerCerts, port_465: int) -> None:
    async with peer(SmtpScript(), tls=certs.server_context(), port=port_465) as server:
        run = await run_smtp(port_465, certs, smtp_use_tls=False, timeout=10)
    finding = run.finding("smtp.tls.mode_mismatch")
    assert finding.fix == "Turn smtp_use_tls on: port 465 speaks implicit TLS."
    assert run.elapsed < ELAPSED_BOUND
    assert_no_secret(server.received)


async def test_a_silent_port_times_out_within_the_timeout_grace_and_probe_included(certs: PeerCerts) -> None:
    async with peer(_silent) as server:
        run = await run_smtp(server.port, certs, timeout=3)
    assert run.codes == ["smtp.connect.timeout"]
    assert len(server.connections) == 2, "the check and one handshake probe"
    assert_bounded(run)


async def test_port_25_is_never_probed_with_a_handshake(certs: PeerCerts) -> None:
    # Postfix's postscreen blocklists a client that talks before the greeting on port 25.
    try:
        server_cm = peer(SmtpScript(), tls=certs.server_context(), port=25)
        server = await server_cm.__aenter__()
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.1:25 here ({exc})")
    try:
        run = await run_smtp(25, certs, timeout=1)
    finally:
        await server_cm.__aexit__(None, None, None)
    assert run.codes == ["smtp.connect.timeout"]
    # The peer runs its script only once a handshake completes: none did.
    assert server.connections == []
