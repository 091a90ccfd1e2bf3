"""A canary password through every SMTP and IMAP scenario: it must surface nowhere.

Each scenario runs with a canary password (with a quote and a backslash, so IMAP's quoted form differs
from the raw one) while every logger, aiosmtplib's, aioimaplib's and asyncio's included, is captured
at DEBUG. The canary, its IMAP-quoted form and its base64 forms (AUTH PLAIN, AUTH LOGIN) must appear
in no log line, no finding, no rendered report (text or JSON) and no exception text. Some peers echo
what they received back in their replies; those scenarios call the check directly, without the
runner's last-line redaction, to show that the checks scrub server text themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from inboxcheck._check import CheckContext, CheckFunction, Outcome
from inboxcheck._knowledge import load_knowledge
from inboxcheck._models import Account, Report
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._presets import load_presets
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import imap, same_mailbox, smtp
from inboxcheck.cli._report import JsonRenderer, TextRenderer
from tests.checks import test_imap as imap_tests, test_smtp as smtp_tests
from tests.helpers import CANARY
from tests.peers import DnsPeer, PeerCerts, PeerConn, Script
from tests.scenarios import ImapScript, SmtpScript, base_payload, peer

PASSWORD = CANARY + '"\\q'
USER = "sam@peer.test"


def canary_forms() -> list[str]:
    import base64

    quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    forms = {
        PASSWORD,
        CANARY,
        quoted,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    }
    return sorted(forms, key=len, reverse=True)


@dataclass
class Scenario:
    name: str
    protocol: str  # "smtp" or "imap"
    script: Callable[[PeerCerts], Script]
    tls: str | None = None  # server certificate kind for an implicit-TLS port
    changes: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


async def _echo_smtp(conn: PeerConn) -> None:
    await conn.send(b"220 echo ESMTP\r\n")
    while line := await conn.line():
        if line.upper().startswith(b"EHLO"):
            await conn.send(b"250-echo\r\n250 AUTH PLAIN LOGIN\r\n")
        elif line.upper().startswith(b"AUTH"):
            await conn.send(b"535 5.7.8 Error: you sent " + line + b"\r\n")
        else:
            await conn.send(b"221 bye\r\n")
            return


async def _echo_imap(conn: PeerConn) -> None:
    await conn.send(b"* OK echo ready\r\n")
    while line := await conn.line():
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"CAPABILITY"):
            await conn.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        elif rest.upper().startswith(b"LOGIN"):
            await conn.send(
                b"* NO you sent " + line + b"\r\n" + tag + b" NO [AUTHENTICATIONFAILED] " + rest + b"\r\n"
            )
        else:
            await conn.send(tag + b" OK bye\r\n")
            return


async def _wrong_tag_imap(conn: PeerConn) -> None:
    """Answers LOGIN with another tag: aioimaplib raises with the pending command in the message."""
    await conn.send(b"* OK ready\r\n")
    while line := await conn.line():
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"CAPABILITY"):
            await conn.send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
        else:
            await conn.send(b"ZZZ9 OK " + rest + b"\r\n")


def _fixed(script: Script) -> Callable[[PeerCerts], Script]:
    return lambda certs: script


def _smtp_cert(kind: str) -> Callable[[PeerCerts], Script]:
    def make(certs: PeerCerts) -> Script:
        return SmtpScript(tls=certs.server_context(kind))

    return make


def _smtp_auth_reply(reply: str) -> Callable[[PeerCerts], Script]:
    def make(certs: PeerCerts) -> Script:
        return SmtpScript(tls=certs.server_context(), auth_reply=reply)

    return make


def _imap_login_reply(reply: str) -> Callable[[PeerCerts], Script]:
    def make(certs: PeerCerts) -> Script:
        return ImapScript(greeting="* OK hi", implicit=True, login_reply=reply)

    return make


SCENARIOS: list[Scenario] = [
    Scenario("smtp-starttls-ok", "smtp", lambda c: SmtpScript(tls=c.server_context())),
    Scenario("smtp-expiring", "smtp", lambda c: SmtpScript(tls=c.server_context("expiring"))),
    *(Scenario(f"smtp-{kind}", "smtp", _smtp_cert(kind)) for kind in ("expired", "selfsigned", "wrongname")),
    Scenario("smtp-no-starttls", "smtp", lambda c: SmtpScript(extensions=("AUTH PLAIN",))),
    Scenario(
        "smtp-tls-off",
        "smtp",
        lambda c: SmtpScript(extensions=("AUTH PLAIN",)),
        changes={"smtp_use_tls": False},
    ),
    Scenario(
        "smtp-tls-off-plaintext",
        "smtp",
        lambda c: SmtpScript(extensions=("AUTH LOGIN",)),
        changes={"smtp_use_tls": False},
        options={"allow_plaintext": True},
    ),
    Scenario(
        "smtp-wrong-password",
        "smtp",
        lambda c: SmtpScript(tls=c.server_context(), auth_reply="535 5.7.8 Error: authentication failed: x"),
    ),
    Scenario(
        "smtp-echo",
        "smtp",
        _fixed(_echo_smtp),
        changes={"smtp_use_tls": False},
        options={"allow_plaintext": True},
    ),
    Scenario("smtp-garbage", "smtp", _fixed(smtp_tests._garbage)),
    Scenario("smtp-silent", "smtp", _fixed(smtp_tests._silent)),
    Scenario("smtp-1mb", "smtp", _fixed(smtp_tests._megabyte_line)),
    Scenario("smtp-endless", "smtp", _fixed(smtp_tests._endless_multiline_greeting)),
    Scenario("smtp-stall", "smtp", _fixed(smtp_tests._stall_after_banner)),
    *(
        Scenario(
            f"smtp-kb-{rule.id}",
            "smtp",
            _smtp_auth_reply(rule.example),
        )
        for rule in load_knowledge().rules
        if rule.protocol == "smtp"
    ),
    Scenario("imap-implicit-ok", "imap", lambda c: ImapScript(greeting="* OK hi", implicit=True), tls="good"),
    Scenario(
        "imap-starttls-ok",
        "imap",
        lambda c: ImapScript(tls=c.server_context()),
        changes={"imap_use_ssl": False},
    ),
    *(
        Scenario(f"imap-{kind}", "imap", lambda c: ImapScript(greeting="* OK hi", implicit=True), tls=kind)
        for kind in ("expired", "selfsigned", "wrongname", "expiring")
    ),
    Scenario(
        "imap-plaintext",
        "imap",
        lambda c: ImapScript(greeting="* OK hi", capabilities="IMAP4rev1"),
        changes={"imap_use_ssl": False},
        options={"allow_plaintext": True},
    ),
    Scenario(
        "imap-authenticate-plain",
        "imap",
        lambda c: ImapScript(
            greeting="* OK hi",
            implicit=True,
            capabilities_implicit="IMAP4rev1 SASL-IR AUTH=PLAIN LOGINDISABLED",
        ),
        tls="good",
    ),
    Scenario(
        "imap-echo",
        "imap",
        _fixed(_echo_imap),
        changes={"imap_use_ssl": False},
        options={"allow_plaintext": True},
    ),
    Scenario(
        "imap-wrong-tag",
        "imap",
        _fixed(_wrong_tag_imap),
        changes={"imap_use_ssl": False},
        options={"allow_plaintext": True},
    ),
    Scenario("imap-garbage", "imap", _fixed(imap_tests._garbage), changes={"imap_use_ssl": False}),
    Scenario("imap-silent", "imap", _fixed(imap_tests._silent), changes={"imap_use_ssl": False}),
    Scenario("imap-1mb", "imap", _fixed(imap_tests._megabyte_line), changes={"imap_use_ssl": False}),
    Scenario("imap-endless", "imap", _fixed(imap_tests._endless_capability), changes={"imap_use_ssl": False}),
    Scenario("imap-stall", "imap", _fixed(imap_tests._stall_after_greeting), changes={"imap_use_ssl": False}),
    *(
        Scenario(
            f"imap-kb-{rule.id}",
            "imap",
            _imap_login_reply(rule.example),
            tls="good",
        )
        for rule in load_knowledge().rules
        if rule.protocol == "imap"
    ),
]


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


def assert_clean(text: str, where: str) -> None:
    for form in canary_forms():
        assert form not in text, f"the canary password (as {form!r}) appears in {where}"


def _account(scenario: Scenario, port: int) -> Account:
    key = "smtp_port" if scenario.protocol == "smtp" else "imap_port"
    payload = base_payload(
        smtp_host="mail.peer.test",
        imap_host="mail.peer.test",
        smtp_password=PASSWORD,
        imap_password=PASSWORD,
        **{key: port},
        **scenario.changes,
    )
    return Account.model_validate(payload)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_the_canary_password_surfaces_nowhere(
    scenario: Scenario, certs: PeerCerts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("aiosmtplib", "aioimaplib", "aioimaplib.aioimaplib", "asyncio", "inboxcheck"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    script = scenario.script(certs)
    tls = certs.server_context(scenario.tls) if scenario.tls else None
    specs = smtp.CHECKS if scenario.protocol == "smtp" else imap.CHECKS
    async with DnsPeer() as dns, peer(script, tls=tls) as server:
        options = CheckOptions(
            timeout=1.0, deadline=10, nameservers=(parse_nameserver(dns.nameserver),), **scenario.options
        )
        account = _account(scenario, server.port)
        report = await run_checks(account, options=options, ssl_context=certs.client_context(), specs=specs)
        # The check alone, without the runner's redaction: its own findings must already be clean.
        check: CheckFunction = smtp.check_smtp_login if scenario.protocol == "smtp" else imap.check_imap_login
        ctx = CheckContext(
            account,
            options=options,
            presets=load_presets(),
            match=load_presets().match(
                smtp_host=account.smtp_host, imap_host=account.imap_host, inbox_type=account.inbox_type
            ),
            ssl_context=certs.client_context(),
        )
        outcome: Outcome = await check(ctx)
    assert report.checks[0].findings or report.checks[0].summary
    assert_clean(report.model_dump_json(), "the JSON report")
    assert_clean(JsonRenderer().render(report), "the rendered JSON")
    assert_clean(TextRenderer(verbose=True).render(report), "the text report")
    assert_clean(repr(report), "the report's repr")
    assert_clean(repr(outcome.findings) + repr(outcome.details) + outcome.summary, "the check's own outcome")
    for result in report.checks:
        assert result.traceback is None, result.traceback
    assert_clean(caplog.text, "the log")
    for record in caplog.records:
        if record.exc_info and record.exc_info[1] is not None:
            assert_clean(str(record.exc_info[1]), "an exception logged")
    # No traceback anywhere: nothing escaped into the event loop's exception handler.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert server.errors == []


async def test_a_full_run_with_both_logins_keeps_the_canary_out(
    certs: PeerCerts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_script = SmtpScript(
        tls=certs.server_context(), auth_reply="535 5.7.8 Error: authentication failed: x"
    )
    imap_script = ImapScript(greeting="* OK hi", implicit=True)
    async with (
        DnsPeer() as dns,
        peer(smtp_script) as smtp_server,
        peer(imap_script, tls=certs.server_context()) as imap_server,
    ):
        account = Account.model_validate(
            base_payload(
                smtp_host="mail.peer.test",
                smtp_port=smtp_server.port,
                imap_host="mail.peer.test",
                imap_port=imap_server.port,
                smtp_password=PASSWORD,
                imap_password=PASSWORD,
            )
        )
        options = CheckOptions(timeout=1.0, deadline=10, nameservers=(parse_nameserver(dns.nameserver),))
        report: Report = await run_checks(
            account,
            options=options,
            ssl_context=certs.client_context(),
            specs=[*smtp.CHECKS, *imap.CHECKS, *same_mailbox.CHECKS],
        )
    assert [c.name for c in report.checks] == ["smtp.login", "imap.login", "login.same_mailbox"]
    assert_clean(report.model_dump_json(), "the JSON report")
    assert_clean(TextRenderer(verbose=True).render(report), "the text report")
    assert_clean(caplog.text, "the log")


def test_the_canary_has_the_characters_that_make_forms_differ() -> None:
    assert '"' in PASSWORD and "\\" in PASSWORD
    assert len(canary_forms()) == 5
