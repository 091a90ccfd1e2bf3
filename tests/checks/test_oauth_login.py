"""OAuth2 token logins (SASL XOAUTH2, OAUTHBEARER) against scripted peers: the exchange on the wire,
Google's base64 JSON failure challenge answered (never a hang), and the findings of a refused token.

The lab's real Dovecot and Postfix accepting tokens are in ``tests/checks/test_oauth_lab.py``.
"""

from __future__ import annotations

import base64
import json

import pytest

from inboxcheck._credential import Credential
from inboxcheck._models import Severity, Status
from inboxcheck._secrets import Scrubber
from inboxcheck.checks.login import imap, smtp
from tests.peers import PeerCerts
from tests.scenarios import TOKEN, USER, ImapScript, Run, SmtpScript, assert_bounded, peer, run_login

GOOGLE_CHALLENGE = base64.b64encode(
    json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}).encode()
).decode()
XOAUTH2 = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())
OAUTHBEARER = base64.b64encode(f"n,a={USER},\x01auth=Bearer {TOKEN}\x01\x01".encode())


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


async def run_smtp(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=port, token=TOKEN, **changes)


async def run_imap(port: int, certs: PeerCerts, **changes: object) -> Run:
    return await run_login(imap.CHECKS, "imap.login", certs, imap_port=port, token=TOKEN, **changes)


def implicit(**kwargs: object) -> ImapScript:
    return ImapScript(greeting="* OK ready", implicit=True, **kwargs)  # type: ignore[arg-type]


def _no_token_in_the_report(run: Run) -> None:
    text = run.report.model_dump_json()
    for form in (TOKEN, XOAUTH2.decode(), OAUTHBEARER.decode()):
        assert form not in text


# --- the encodings and the scrubber ------------------------------------------------------------


def test_a_bearer_credential_encodes_xoauth2_and_oauthbearer() -> None:
    credential = Credential.bearer(USER, TOKEN)
    assert credential.xoauth2().encode() == XOAUTH2
    assert credential.oauthbearer().encode() == OAUTHBEARER
    assert TOKEN not in repr(credential)
    assert credential.is_token and not Credential.bearer(USER, "a\x01b").sendable()


def test_the_scrubber_knows_every_wire_form_of_a_token() -> None:
    scrub = Scrubber(credentials=[Credential.bearer(USER, TOKEN)])
    for form in (
        TOKEN,
        XOAUTH2.decode(),
        OAUTHBEARER.decode(),
        f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01",
    ):
        assert form not in scrub(f"the server echoed <{form}> back"), form


# --- SMTP ----------------------------------------------------------------------------------------


async def test_smtp_logs_in_with_xoauth2(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(), extensions_after_tls=("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",)
    )
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "XOAUTH2"
    assert b"AUTH XOAUTH2 " + XOAUTH2 in script.commands
    assert TOKEN.encode() not in server.cleartext
    _no_token_in_the_report(run)
    assert_bounded(run)


async def test_smtp_uses_oauthbearer_where_xoauth2_is_not_offered(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=("AUTH PLAIN OAUTHBEARER",))
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "OAUTHBEARER"
    assert b"AUTH OAUTHBEARER " + OAUTHBEARER in script.commands


async def test_smtp_answers_googles_challenge_and_reads_it(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(),
        extensions_after_tls=("AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",),
        auth_challenge=GOOGLE_CHALLENGE,
        auth_reply="535-5.7.8 Username and Password not accepted. For more information, go to\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a05600c000000b0000000000sm0",
    )
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert script.challenge_answers == [b"\r\n"], "XOAUTH2's answer to a challenge is an empty line"
    finding = run.finding("smtp.auth.token_rejected")
    assert finding.severity is Severity.FAIL
    assert "expired or invalid" in finding.message and "https://mail.google.com/" in finding.message
    assert finding.evidence["challenge"]["status"] == "401"
    assert run.codes == ["smtp.auth.token_rejected"], "a token is no wrong password"
    _no_token_in_the_report(run)
    assert_bounded(run)


async def test_smtp_oauthbearer_challenge_is_answered_with_a_kvsep(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(),
        extensions_after_tls=("AUTH OAUTHBEARER",),
        auth_challenge=base64.b64encode(b'{"status":"invalid_token"}').decode(),
        auth_reply="535 5.7.8 Authentication failed",
    )
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    assert script.challenge_answers == [b"AQ==\r\n"], "RFC 7628 3.2.3: the dummy response is ^A"
    assert run.finding("smtp.auth.token_rejected").evidence["challenge"]["status"] == "invalid_token"


async def test_smtp_token_on_a_server_without_token_logins_is_unsupported(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.auth.unsupported")
    assert "neither XOAUTH2 nor OAUTHBEARER" in finding.message
    assert not any(c.startswith(b"AUTH") for c in script.commands)


async def test_smtp_password_on_a_token_only_server_says_how_to_use_a_token(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=("AUTH XOAUTH2",))
    async with peer(script) as server:
        run = await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=server.port)
    assert "INBOXCHECK_SMTP_OAUTH_TOKEN" in (run.finding("smtp.auth.unsupported").fix or "")


# --- IMAP ----------------------------------------------------------------------------------------


async def _imap(script: ImapScript, certs: PeerCerts) -> Run:
    async with peer(script, tls=certs.server_context()) as server:
        return await run_imap(server.port, certs)


async def test_imap_xoauth2_with_sasl_ir(certs: PeerCerts) -> None:
    script = implicit(capabilities_implicit="IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER")
    run = await _imap(script, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "AUTHENTICATE XOAUTH2"
    assert any(c.endswith(b"AUTHENTICATE XOAUTH2 " + XOAUTH2) for c in script.commands)
    _no_token_in_the_report(run)
    assert_bounded(run)


async def test_imap_oauthbearer_without_sasl_ir_sends_after_the_continuation(certs: PeerCerts) -> None:
    script = implicit(capabilities_implicit="IMAP4rev1 AUTH=OAUTHBEARER")
    run = await _imap(script, certs)
    assert run.result.status is Status.PASS, run.result
    assert run.result.details["auth_mechanism"] == "AUTHENTICATE OAUTHBEARER"
    assert any(c.endswith(b"AUTHENTICATE OAUTHBEARER") for c in script.commands)


async def test_imap_answers_googles_challenge_instead_of_hanging(certs: PeerCerts) -> None:
    script = implicit(
        capabilities_implicit="IMAP4rev1 SASL-IR AUTH=XOAUTH2",
        auth_challenge=GOOGLE_CHALLENGE,
        login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
    )
    run = await _imap(script, certs)
    assert script.challenge_answers == [b"\r\n"]
    finding = run.finding("imap.auth.token_rejected")
    assert finding.severity is Severity.FAIL
    assert "https://mail.google.com/" in finding.message
    assert finding.evidence["challenge"]["scope"] == "https://mail.google.com/"
    assert run.codes == ["imap.auth.token_rejected"]
    _no_token_in_the_report(run)
    assert_bounded(run)


async def test_imap_token_on_a_server_without_token_logins_is_unsupported(certs: PeerCerts) -> None:
    script = implicit()
    run = await _imap(script, certs)
    assert run.finding("imap.auth.unsupported").severity is Severity.FAIL
    assert not any(b"AUTHENTICATE" in c or b"LOGIN" in c for c in script.commands)


async def test_imap_temporary_refusal_of_a_token_is_could_not_tell(certs: PeerCerts) -> None:
    script = implicit(
        capabilities_implicit="IMAP4rev1 SASL-IR AUTH=XOAUTH2",
        login_reply="NO [UNAVAILABLE] Temporary authentication failure",
    )
    run = await _imap(script, certs)
    assert run.result.status is Status.ERROR, run.result


async def test_a_server_that_echoes_the_token_has_it_redacted(certs: PeerCerts) -> None:
    echoed = f"535 5.7.8 bad token {XOAUTH2.decode()} / Bearer {TOKEN}"
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=("AUTH XOAUTH2",), auth_reply=echoed)
    async with peer(script) as server:
        run = await run_smtp(server.port, certs)
    finding = run.finding("smtp.auth.token_rejected")
    assert "[redacted]" in finding.evidence["reply"]
    _no_token_in_the_report(run)
