"""The IMAP login check against scripted peers: TLS modes, certificates, hostile servers, replies."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import logging

import pytest

from inboxcheck._models import Severity, Status
from inboxcheck.checks.login import imap, imap_protocol
from inboxcheck.checks.login.net import ConnectFailure
from tests.peers import DnsPeer, PeerCerts, PeerConn
from tests.scenarios import (
    ELAPSED_BOUND,
    USER,
    ImapScript,
    Run,
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


async def run_imap(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(imap.CHECKS, "imap.login", certs, imap_port=port, **changes)


def implicit(certs: PeerCerts, **kwargs: object) -> ImapScript:
    return ImapScript(greeting="* OK inboxcheck peer ready", implicit=True, **kwargs)  # type: ignore[arg-type]


# --- the good paths ---------------------------------------------------------------------------


async def test_implicit_tls_login_and_examine_pass(certs: PeerCerts) -> None:
    script = implicit(certs)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.codes == []
    assert run.result.details["inbox_messages"] == 3
    assert run.result.details["auth_mechanism"] == "LOGIN"
    verbs = [c.split(b" ")[1] for c in script.commands]
    assert verbs == [b"CAPABILITY", b"LOGIN", b"EXAMINE", b"LOGOUT"]
    assert b"EXAMINE INBOX" in server.received
    assert b"SELECT" not in server.received, "INBOX must be opened read-only"
    assert_bounded(run)


async def test_starttls_then_login_with_logindisabled_before_tls(certs: PeerCerts) -> None:
    script = ImapScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False)
    assert run.result.status is Status.PASS, run.result
    assert "LOGINDISABLED" in run.detail("capabilities_before_tls")
    assert "LOGINDISABLED" not in run.detail("capabilities")
    assert_no_secret(server.cleartext)
    assert b"STARTTLS" in server.cleartext
    assert_bounded(run)


async def test_authenticate_plain_when_login_is_disabled_after_tls(certs: PeerCerts) -> None:
    script = implicit(certs, capabilities_implicit="IMAP4rev1 SASL-IR AUTH=PLAIN LOGINDISABLED")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "AUTHENTICATE PLAIN"
    assert_no_secret(b"".join(c for c in script.commands if b"AUTHENTICATE" not in c))
    assert any(b"AUTHENTICATE PLAIN" in c for c in script.commands)


async def test_a_password_with_quotes_and_backslashes_logs_in(certs: PeerCerts) -> None:
    tricky = 'pa"ss\\word'
    script = implicit(certs)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs, imap_password=tricky)
    assert run.result.status is Status.PASS
    login = next(c for c in script.commands if b" LOGIN " in c)
    assert login.endswith(b'"sam@peer.test" "pa\\"ss\\\\word"')


# --- certificates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("expired", "imap.tls.cert_expired"),
        ("selfsigned", "imap.tls.cert_untrusted"),
        ("wrongname", "imap.tls.hostname_mismatch"),
        ("notyet", "imap.tls.cert_not_yet_valid"),
    ],
)
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_a_bad_certificate_fails_and_no_credential_is_sent(
    certs: PeerCerts, kind: str, code: str, mode: str
) -> None:
    if mode == "implicit":
        script = implicit(certs)
        context = certs.server_context(kind)
        async with peer(script, tls=context) as server:
            run = await run_imap(server.port, certs)
    else:
        script = ImapScript(tls=certs.server_context(kind))
        async with peer(script) as server:
            run = await run_imap(server.port, certs, imap_use_ssl=False)
    finding = run.finding(code)
    assert finding.severity is Severity.FAIL
    assert not any(b"LOGIN" in c or b"AUTHENTICATE" in c for c in script.commands)
    assert_no_secret(server.received)
    assert_bounded(run)
    if kind == "expired":
        assert -32 <= finding.evidence["days_to_expiry"] <= -29


async def test_expiring_certificate_warns(certs: PeerCerts) -> None:
    async with peer(implicit(certs), tls=certs.server_context("expiring")) as server:
        run = await run_imap(server.port, certs)
    assert run.finding("imap.tls.cert_expiring").evidence["days_to_expiry"] == 5
    assert run.result.status is Status.WARN


# --- TLS refused or off; LOGINDISABLED -----------------------------------------------------------


async def test_no_starttls_and_no_ssl_sends_no_credential(certs: PeerCerts) -> None:
    script = ImapScript(greeting="* OK ready", capabilities="IMAP4rev1 AUTH=PLAIN")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False)
    assert run.finding("imap.starttls.unavailable").severity is Severity.FAIL
    assert_no_secret(server.received)
    assert not any(b"LOGIN" in c for c in script.commands)


async def test_no_starttls_with_allow_plaintext_logs_in_in_clear(certs: PeerCerts) -> None:
    script = ImapScript(greeting="* OK ready", capabilities="IMAP4rev1 AUTH=PLAIN")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, allow_plaintext=True)
    assert run.codes == ["imap.tls.disabled"]
    assert run.result.details["authenticated_as"] == USER


async def test_logindisabled_without_another_way_in(certs: PeerCerts) -> None:
    script = ImapScript(greeting="* OK ready", capabilities="IMAP4rev1 LOGINDISABLED")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, allow_plaintext=True)
    finding = run.finding("imap.login_disabled")
    assert finding.severity is Severity.FAIL
    assert_no_secret(server.received)


# --- logins and INBOX ---------------------------------------------------------------------------


async def test_wrong_password(certs: PeerCerts) -> None:
    script = implicit(certs, login_reply="NO [AUTHENTICATIONFAILED] Authentication failed.")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    finding = run.finding("imap.auth.rejected")
    assert finding.evidence["reply"] == "NO [AUTHENTICATIONFAILED] Authentication failed."
    assert not any(b"EXAMINE" in c for c in script.commands)
    del server


async def test_unknown_refusal_falls_back_to_rejected(certs: PeerCerts) -> None:
    script = implicit(certs, login_reply="NO something odd happened")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.finding("imap.auth.rejected").evidence["reply"] == "NO something odd happened"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (
            "NO [UNAVAILABLE] Temporary authentication failure. [mail.peer.test:2026-12-02 10:00:00]",
            "imap.reply.temporary",
        ),
        (
            "NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded "
            "(mail_max_userip_connections=10)",
            "imap.connections.limit",
        ),
        ("NO [ALERT] Too many simultaneous connections. (Failure)", "imap.connections.limit"),
        ("NO [UNAVAILABLE] LOGIN failed.", "imap.reply.temporary"),
    ],
)
async def test_temporary_refusals_are_could_not_tell_not_rejected(
    certs: PeerCerts, reply: str, code: str
) -> None:
    script = implicit(certs, login_reply=reply)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.codes == [code]
    assert run.finding(code).severity is Severity.ERROR
    assert run.result.status is Status.ERROR
    assert run.report.exit_code == 3
    del server


async def test_the_connection_limit_says_other_clients_hold_the_mailbox(certs: PeerCerts) -> None:
    script = implicit(certs, login_reply="NO [ALERT] Too many simultaneous connections. (Failure)")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    finding = run.finding("imap.connections.limit")
    assert "platform's own workers" in (finding.fix or "")
    assert "nothing about the password" in finding.message
    assert finding.message.endswith('The server says: "Too many simultaneous connections. (Failure)"')
    assert finding.evidence["alert"] == "Too many simultaneous connections. (Failure)"
    del server


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("NO [EXPIRED] Password expired, change it on the web", "imap.auth.expired"),
        ("NO [PRIVACYREQUIRED] Encryption required", "imap.auth.privacy_required"),
        ("NO [CONTACTADMIN] Account locked", "imap.auth.contact_admin"),
        ("NO [AUTHORIZATIONFAILED] Not allowed", "imap.auth.authorization_failed"),
    ],
)
async def test_rfc5530_codes_get_their_own_finding(certs: PeerCerts, reply: str, code: str) -> None:
    script = implicit(certs, login_reply=reply)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.codes == [code]
    assert run.finding(code).severity is Severity.FAIL
    del server


async def test_an_alert_is_shown_to_the_user_verbatim_and_escaped(certs: PeerCerts) -> None:
    script = implicit(
        certs, login_reply="NO [ALERT] Mailbox moved to \x1b[31mimap.new.test\x1b[0m, log in there"
    )
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    finding = run.finding("imap.auth.rejected")
    shown = "Mailbox moved to \\x1b[31mimap.new.test\\x1b[0m, log in there"
    assert finding.message.endswith(f'The server says: "{shown}"')
    assert "\x1b" not in finding.message
    del server


@pytest.mark.parametrize("inbox_type", ["CUSTOM_SMTP", "GOOGLE_WORKSPACE"])
async def test_googles_app_password_alert_is_known_on_any_host(certs: PeerCerts, inbox_type: str) -> None:
    reply = "NO [ALERT] Application-specific password required: https://support.google.com/x (Failure)"
    script = implicit(certs, login_reply=reply)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs, inbox_type=inbox_type)
    assert run.codes == ["imap.auth.app_password_required"]
    assert "Application-specific password required" in run.finding("imap.auth.app_password_required").message
    del server


async def test_inbox_temporarily_unavailable_is_could_not_tell(certs: PeerCerts) -> None:
    script = implicit(certs, examine_reply="NO [UNAVAILABLE] Mailbox is being migrated, try later")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    assert run.finding("imap.inbox.unavailable").severity is Severity.ERROR
    assert run.result.status is Status.ERROR
    del server


async def test_inbox_that_cannot_be_opened(certs: PeerCerts) -> None:
    script = implicit(certs, examine_reply="NO [NONEXISTENT] Mailbox doesn't exist: INBOX")
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs)
    finding = run.finding("imap.inbox.unavailable")
    assert "NONEXISTENT" in finding.evidence["reply"]
    del server


# --- connection failures ------------------------------------------------------------------------


async def test_refused(certs: PeerCerts) -> None:
    run = await run_imap(free_port(), certs)
    assert run.finding("imap.connect.refused").severity is Severity.FAIL
    assert_bounded(run)


async def test_unresolvable(certs: PeerCerts) -> None:
    async with DnsPeer(nxdomain=("nosuch.peer.test",)) as dns:
        run = await run_imap(993, certs, imap_host="nosuch.peer.test", nameservers=[dns.nameserver])
    assert run.finding("imap.connect.unresolvable").severity is Severity.FAIL


# --- hostile peers ------------------------------------------------------------------------------


async def _garbage(conn: PeerConn) -> None:
    await conn.send(b"\x00\xff\xfeHELLO? this is not imap\r\n")
    await conn.until_closed()


async def _silent(conn: PeerConn) -> None:
    await conn.until_closed()


async def _megabyte_line(conn: PeerConn) -> None:
    await conn.send(b"* OK " + b"x" * (1 << 20) + b"\r\n")
    await conn.until_closed()


async def _drop_mid_handshake(conn: PeerConn) -> None:
    await conn.reader.read(10)
    conn.abort()


async def _endless_capability(conn: PeerConn) -> None:
    await conn.send(b"* OK ready\r\n")
    await conn.line()
    for batch in range(1000):  # bounded (~40 MB); a CAPABILITY response that never gets its tagged end
        lines = "".join(f"* OK still listing capabilities, line {batch}.{i}\r\n" for i in range(1000))
        await conn.send(lines.encode())


async def _stall_after_greeting(conn: PeerConn) -> None:
    await conn.send(b"* OK ready\r\n")
    await conn.until_closed()


async def _bye_greeting(conn: PeerConn) -> None:
    await conn.send(b"* BYE too many connections\r\n")


@pytest.mark.parametrize(
    ("script", "code", "severity"),
    [
        (_garbage, "imap.protocol.error", Severity.FAIL),
        (_silent, "imap.connect.timeout", Severity.ERROR),
        (_megabyte_line, "imap.protocol.error", Severity.FAIL),
        (_endless_capability, "imap.protocol.error", Severity.FAIL),
        (_stall_after_greeting, "imap.connect.timeout", Severity.ERROR),
        (_bye_greeting, "imap.protocol.error", Severity.FAIL),
    ],
    ids=["garbage-greeting", "greeting-never-comes", "1mb-line", "endless-multiline", "stall", "bye"],
)
async def test_hostile_peer_ends_in_its_finding(
    certs: PeerCerts, script: object, code: str, severity: Severity
) -> None:
    async with peer(script, tls=None) as server:  # type: ignore[arg-type]
        run = await run_imap(server.port, certs, imap_use_ssl=False)
    assert run.finding(code).severity is severity
    assert_bounded(run)
    assert_no_secret(server.received)
    assert server.errors == []


async def test_dropped_mid_implicit_handshake(certs: PeerCerts) -> None:
    async with peer(_drop_mid_handshake) as server:
        run = await run_imap(server.port, certs)
    assert run.finding("imap.tls.handshake_failed").severity is Severity.FAIL
    assert_bounded(run)


async def test_dropped_mid_starttls_handshake(certs: PeerCerts) -> None:
    async def script(conn: PeerConn) -> None:
        await conn.send(b"* OK ready\r\n")
        tag = (await conn.line()).split(b" ")[0]
        await conn.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK done\r\n")
        tag = (await conn.line()).split(b" ")[0]
        await conn.send(tag + b" OK Begin TLS\r\n")
        await _drop_mid_handshake(conn)

    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False)
    assert run.finding("imap.tls.handshake_failed").severity is Severity.FAIL
    assert_bounded(run)
    assert_no_secret(server.received)


async def test_login_command_never_reaches_the_debug_log(
    certs: PeerCerts, caplog: pytest.LogCaptureFixture
) -> None:
    tricky = 'pa"ss\\word-canary'
    script = implicit(certs, login_reply="NO [AUTHENTICATIONFAILED] Authentication failed.")
    caplog.set_level(logging.DEBUG)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs, imap_password=tricky)
    assert run.codes == ["imap.auth.rejected"]
    assert "ss\\\\word" not in caplog.text and "word-canary" not in caplog.text
    del server


async def test_a_check_cut_by_the_run_deadline_closes_its_connection(certs: PeerCerts) -> None:
    async with peer(_stall_after_greeting) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, timeout=30, deadline=0.5)
    # Each step's timeout is cut by the deadline, so the check may end on its own timeout just before
    # the runner cancels it: both are right; what matters is that it ends and closes everything.
    assert run.codes in (["run.deadline_exceeded"], ["imap.connect.timeout"])
    assert run.elapsed < ELAPSED_BOUND
    await asyncio.sleep(0)  # let the aborted transport's close callback run before the loop ends


async def test_a_login_commands_text_never_shows_the_password() -> None:
    command = imap_protocol._MaskedCommand(
        "LOGIN", "A1", '"sam"', '"s3cret-pw"', loop=asyncio.get_running_loop()
    )
    assert "s3cret-pw" not in repr(command)
    assert "s3cret-pw" not in str(command)
    assert "s3cret-pw" not in f"{command} {command!r} %s" % command
    assert command.wire == 'A1 LOGIN "sam" "s3cret-pw"'


async def _stall_at_login(conn: PeerConn) -> None:
    await conn.send(b"* OK ready\r\n")
    tag = (await conn.line()).split(b" ")[0]
    await conn.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
    await conn.line()  # the LOGIN: never answered
    await conn.until_closed()


async def test_a_server_that_never_answers_the_login(certs: PeerCerts) -> None:
    async with peer(_stall_at_login) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, allow_plaintext=True)
    finding = run.finding("imap.protocol.timeout")
    assert finding.severity is Severity.ERROR
    assert finding.evidence["stage"] == "login"
    assert_bounded(run)


async def test_a_refused_starttls(certs: PeerCerts) -> None:
    script = ImapScript(tls=certs.server_context(), starttls_reply="NO [UNAVAILABLE] TLS is not available")
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False)
    finding = run.finding("imap.starttls.failed")
    assert "UNAVAILABLE" in finding.evidence["reply"]
    assert finding.severity is Severity.ERROR, "[UNAVAILABLE] is temporary (RFC 5530)"
    assert not any(b"LOGIN" in c for c in script.commands)
    assert_no_secret(server.received)


@pytest.mark.parametrize("password", ["line\nbreak", "\ud800abc"])
async def test_a_password_imap_cannot_carry_is_a_finding(certs: PeerCerts, password: str) -> None:
    script = implicit(certs)
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_imap(server.port, certs, imap_password=password)
    assert run.codes == ["imap.auth.unsendable"]
    assert not any(b"LOGIN" in c for c in script.commands)
    assert_bounded(run)


async def test_an_unreachable_network_is_could_not_tell() -> None:
    login = imap._ImapLogin(check_context())
    login._not_connected(ConnectFailure.UNREACHABLE, [])
    (finding,) = login.out.findings
    assert finding.code == "imap.connect.failed"
    assert finding.severity is Severity.ERROR
    login.tls_ready.cancel()


# --- the TLS mode on the wrong port ------------------------------------------------------------


async def test_ssl_off_on_an_implicit_tls_port_is_a_mode_mismatch_found_quickly(certs: PeerCerts) -> None:
    script = implicit(certs)
    async with peer(script, tls=certs.server_context()) as server:
        # Off port 993 the greeting is awaited for the step timeout (less the probe's end) first.
        run = await run_imap(server.port, certs, imap_use_ssl=False, timeout=3)
    assert run.codes == ["imap.tls.mode_mismatch"]
    finding = run.finding("imap.tls.mode_mismatch")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["observed"] == "implicit"
    assert finding.fix == f"Turn imap_use_ssl on for port {server.port}."
    assert run.elapsed < ELAPSED_BOUND, f"took {run.elapsed:.2f} s with --timeout 3"
    assert script.commands == [], "only a handshake was tried: no command, no credential"
    assert_no_secret(server.received)


async def test_ssl_on_a_port_that_greets_in_clear_text_is_the_mirror_mismatch(certs: PeerCerts) -> None:
    script = ImapScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=True, timeout=10)
    assert run.codes == ["imap.tls.mode_mismatch"]
    finding = run.finding("imap.tls.mode_mismatch")
    assert finding.evidence["observed"] == "plain"
    assert finding.evidence["greeting"] == script.greeting
    assert (finding.fix or "").startswith(f"Turn imap_use_ssl off for port {server.port}")
    assert run.elapsed < ELAPSED_BOUND
    assert_no_secret(server.received)


async def test_a_silent_port_that_speaks_no_tls_either_still_times_out_within_the_timeout(
    certs: PeerCerts,
) -> None:
    # The grace (1.5 s here) and the handshake probe (up to 1.5 s) count toward the 3 s timeout:
    # without that the check would take about 6 s.
    async with peer(_silent) as server:
        run = await run_imap(server.port, certs, imap_use_ssl=False, timeout=3)
    assert run.codes == ["imap.connect.timeout"]
    assert len(server.connections) == 2, "the check and one handshake probe"
    assert_bounded(run)


async def test_a_finished_login_frees_its_connection_without_the_cycle_collector(certs: PeerCerts) -> None:
    # Each TLS connection holds asyncio's 256 KiB read buffer: a connection kept alive by a reference
    # cycle waits for a full collection, and a batch at concurrency 50 held hundreds of them (bench/README.md,
    # "Batch").
    gc.collect()
    gc.disable()
    try:
        async with peer(implicit(certs), tls=certs.server_context()) as server:
            run = await run_imap(server.port, certs)
        for _ in range(3):
            await asyncio.sleep(0)  # the aborted transport's close callbacks
        # The peer's own server-side connection may still be closing: only the check's is counted.
        alive: list[object] = [o for o in gc.get_objects() if isinstance(o, imap_protocol._Protocol)]
        alive += [
            o
            for o in gc.get_objects()
            if isinstance(o, asyncio.sslproto.SSLProtocol)
            and isinstance(o._app_protocol, imap_protocol._Protocol)
        ]
    finally:
        gc.enable()
    assert run.result.status is Status.PASS, run.result
    assert alive == []
