"""Microsoft's end of SMTP AUTH Basic authentication in every report, by the run's (injected) date, and
Microsoft accounts with a token: no "OAuth only" false fail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from inboxcheck._credential import Credential
from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._options import CheckOptions
from inboxcheck._runner import run_checks
from inboxcheck.checks import account as account_checks
from inboxcheck.checks.login import smtp
from tests.peers import PeerCerts
from tests.scenarios import TOKEN, SmtpScript, base_payload, peer

BEFORE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
AFTER = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


async def _smtp(
    certs: PeerCerts, script: SmtpScript, now: datetime, *, token: bool = False, **changes: Any
) -> Report:
    async with peer(script) as server:
        payload = base_payload(**{"inbox_type": "OUTLOOK_365", "smtp_port": server.port, **changes})
        account = Account.model_validate(payload)
        if token:
            account = account.with_credentials(smtp=Credential.bearer(account.smtp_username, TOKEN))
        return await run_checks(
            account,
            options=CheckOptions(timeout=1.0, deadline=20),
            ssl_context=certs.client_context(),
            specs=smtp.CHECKS,
            now=lambda: now,
        )


async def test_a_working_password_login_is_warned_of_the_end_of_december(certs: PeerCerts) -> None:
    report = await _smtp(certs, SmtpScript(tls=certs.server_context()), BEFORE)
    result = report.check("smtp.login")
    finding = next(f for f in result.findings if f.code == "smtp.auth.basic_auth_ending")
    assert finding.severity is Severity.WARN
    assert result.status is Status.WARN
    assert (
        "turns SMTP AUTH Basic authentication off by default for existing tenants at the end of December 2026"
        in (finding.message)
    )
    assert "works today" in finding.message and "move to OAuth2" in finding.message
    assert finding.evidence["as_of"] == "2026-12-07"


async def test_after_the_change_the_notice_says_since(certs: PeerCerts) -> None:
    report = await _smtp(certs, SmtpScript(tls=certs.server_context()), AFTER)
    finding = next(f for f in report.check("smtp.login").findings if f.code == "smtp.auth.basic_auth_ending")
    assert finding.message.startswith("This password login works today. Since the end of December 2026")


async def test_a_5_7_30_refusal_is_the_cause_with_the_timeline(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(),
        auth_reply="550 5.7.30 Basic authentication is not supported for Client Submission.",
    )
    report = await _smtp(certs, script, AFTER)
    result = report.check("smtp.login")
    assert [f.code for f in result.findings] == ["smtp.auth.basic_auth_retired"]
    assert result.status is Status.FAIL
    assert "Since the end of December 2026" in result.findings[0].message


async def test_a_token_login_at_microsoft_has_no_basic_auth_notice(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), extensions_after_tls=("AUTH LOGIN XOAUTH2",))
    report = await _smtp(certs, script, BEFORE, token=True)
    assert report.check("smtp.login").status is Status.PASS
    assert report.check("smtp.login").findings == ()


async def test_a_password_at_another_provider_has_no_notice(certs: PeerCerts) -> None:
    report = await _smtp(certs, SmtpScript(tls=certs.server_context()), BEFORE, inbox_type="CUSTOM_SMTP")
    assert report.check("smtp.login").status is Status.PASS


def _outlook_com(**changes: Any) -> Account:
    return Account.model_validate(
        base_payload(
            email_address="sam@outlook.com",
            inbox_type="OUTLOOK_365",
            smtp_host="smtp-mail.outlook.com",
            smtp_port=587,
            smtp_username="sam@outlook.com",
            imap_host="outlook.office365.com",
            imap_port=993,
            imap_username="sam@outlook.com",
            **changes,
        )
    )


async def _policy(account: Account) -> Any:
    spec = [s for s in account_checks.CHECKS if s.name == "account.auth_policy"]
    report = await run_checks(account, options=CheckOptions(), specs=spec)
    return report.check("account.auth_policy")


async def test_outlook_com_with_a_token_passes_the_login_policy() -> None:
    account = _outlook_com()
    with_tokens = account.with_credentials(
        smtp=Credential.bearer(account.smtp_username, TOKEN),
        imap=Credential.bearer(account.imap_username, TOKEN),
    )
    assert (await _policy(account)).status is Status.FAIL, "a password at Outlook.com cannot work"
    assert (await _policy(with_tokens)).status is Status.PASS


async def test_diagnose_names_the_microsoft_change_by_the_date(certs: PeerCerts) -> None:
    from inboxcheck._diagnose import diagnose
    from inboxcheck._options import Family

    async with peer(SmtpScript(tls=certs.server_context())) as server:
        payload = base_payload(inbox_type="OUTLOOK_365", smtp_port=server.port)
        result = await diagnose(
            payload,
            options=CheckOptions(timeout=1.0, deadline=20, families=frozenset({Family.SMTP})),
            try_alternates=False,
            ssl_context=certs.client_context(),
            now=lambda: AFTER,
        )
    codes = [cause.code for cause in result.causes]
    assert "smtp.auth.basic_auth_ending" in codes
    cause = next(c for c in result.causes if c.code == "smtp.auth.basic_auth_ending")
    assert "Since the end of December 2026" in cause.message


async def test_a_passing_gate_says_the_microsoft_password_login_is_ending(certs: PeerCerts) -> None:
    # The gate lets a working password login through; the inbox it creates breaks when the tenant's
    # SMTP AUTH is switched off, so the gate's own lines say so (a dry run: nothing is sent).
    from inboxcheck.cli.connect import render_connect
    from inboxcheck.platform.connect import ConnectResult
    from inboxcheck.platform.gate import choose_daily_limit

    report = await _smtp(certs, SmtpScript(tls=certs.server_context()), BEFORE)
    result = ConnectResult(
        report=report,
        gate="passed",
        dry_run=True,
        url="https://api.example.test/api/public/v1/sender-accounts",
        payload={},
        daily_limit=choose_daily_limit(None, 20, apply_recommended=False),
    )
    text = render_connect(result, colour=False, unicode=False, verbose=False)
    gate = text[text.index("Gate: PASSED") :]
    assert "Gate note: " in gate
    assert "end of December 2026" in gate and "move to OAuth2" in gate


# --- the daily-limit story -------------------------------------------------------------------------


async def _limit(now: datetime, *, token: bool = False, specs: Any = None, **changes: Any) -> Report:
    """A report of the account checks alone (no login): the recommendation is known offline."""
    account = Account.model_validate(
        base_payload(**{"inbox_type": "OUTLOOK_365", "smtp_host": "smtp.office365.com", **changes})
    )
    if token:
        account = account.with_credentials(smtp=Credential.bearer(account.smtp_username, TOKEN))
    limit_spec = [s for s in account_checks.CHECKS if s.name == "account.daily_limit"]
    return await run_checks(
        account, options=CheckOptions(), specs=limit_spec if specs is None else specs, now=lambda: now
    )


async def test_the_daily_limit_story_says_microsoft_is_retiring_the_password_login() -> None:
    from inboxcheck.cli._report import TextRenderer

    report = await _limit(BEFORE)
    limit = report.recommended_daily_limit
    [caveat] = limit.caveats
    assert caveat.startswith("this limit assumes the password login keeps working, and Microsoft is retiring")
    assert "goes off by default for existing tenants at the end of December 2026" in caveat
    assert "move to OAuth2, which inboxcheck checks too" in caveat
    # The check tells the same story as the report.
    assert report.check("account.daily_limit").details["caveats"] == [caveat]
    footer = TextRenderer(colour=False, unicode=False).render(report)
    assert f"note: {caveat}" in " ".join(footer.split())

    after = (await _limit(AFTER)).recommended_daily_limit
    [told_after] = after.caveats
    assert "since the end of December 2026 SMTP AUTH Basic authentication is off" in told_after


async def test_the_microsoft_caveat_changes_no_number() -> None:
    password = (await _limit(BEFORE, daily_limit=70)).recommended_daily_limit
    token = (await _limit(BEFORE, token=True, daily_limit=70)).recommended_daily_limit
    other = (await _limit(BEFORE, inbox_type="CUSTOM_SMTP", smtp_host="127.0.0.1")).recommended_daily_limit
    assert password.caveats and token.caveats == () and other.caveats == ()
    assert password.model_copy(update={"caveats": ()}) == token
    assert (password.value, password.reasons, password.ramp) == (other.value, other.reasons, other.ramp)


async def test_a_report_without_the_limit_check_tells_the_caveat_too() -> None:
    # No account.daily_limit in the run: the runner makes the recommendation, with the same caveat.
    report = await _limit(BEFORE, specs=[])
    [caveat] = report.recommended_daily_limit.caveats
    assert "Microsoft is retiring" in caveat
