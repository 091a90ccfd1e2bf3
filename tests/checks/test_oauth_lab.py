"""Token logins for real: Dovecot's oauth2 passdb asks the lab's introspection endpoint
(lab/oauth_double.py), and Postfix authenticates through Dovecot, so XOAUTH2 and OAUTHBEARER work on
both; refreshes go to the double's token endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from inboxcheck._credential import Credential
from inboxcheck._input import OAuthTokens, parse_account
from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._oauth import RefreshRequest, refresh_access_token
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import imap, smtp

pytestmark = pytest.mark.lab

USER = "alice@lab.test"


def _options(lab: Any) -> CheckOptions:
    address, port = lab.nameserver
    return CheckOptions(
        timeout=5.0, deadline=30, nameservers=(parse_nameserver(f"{address}:{port}"),), ca_file=lab.ca_file
    )


async def _run(lab: Any, token: str, **endpoints: str) -> Report:
    payload = lab.account(USER, **endpoints)
    account = Account.model_validate(payload).with_credentials(
        smtp=Credential.bearer(payload["smtp_username"], token),
        imap=Credential.bearer(payload["imap_username"], token),
    )
    return await run_checks(account, options=_options(lab), specs=[*smtp.CHECKS, *imap.CHECKS])


async def test_a_lab_account_logs_in_with_a_token_over_smtp_and_imap(lab: Any) -> None:
    report = await _run(lab, lab.oauth.access_token(USER))
    smtp_result, imap_result = report.check("smtp.login"), report.check("imap.login")
    assert smtp_result.status is Status.PASS, smtp_result
    assert smtp_result.details["auth_mechanism"] == "XOAUTH2"
    assert imap_result.status is Status.PASS, imap_result
    assert imap_result.details["auth_mechanism"] == "AUTHENTICATE XOAUTH2"
    assert lab.oauth.access_token(USER) not in report.model_dump_json()


async def test_a_wrong_token_fails_as_a_refused_token(lab: Any) -> None:
    report = await _run(lab, "lab-at-not-a-token-anyone-issued")
    assert report.check("smtp.login").findings[0].code == "smtp.auth.token_rejected"
    imap_finding = report.check("imap.login").findings[0]
    assert imap_finding.code == "imap.auth.token_rejected"
    assert imap_finding.severity is Severity.FAIL
    assert "lab-at-not-a-token" not in report.model_dump_json()


async def _refresh(lab: Any, refresh_token: str, **changes: Any) -> Any:
    request = RefreshRequest(
        provider="google",
        client_id=changes.pop("client_id", "lab-client"),
        refresh_token=SecretStr(refresh_token),
        token_url=lab.oauth.token_url,
    )
    return await refresh_access_token(request, step_timeout=5.0)


async def test_a_refresh_gives_a_token_that_logs_in(lab: Any) -> None:
    outcome = await _refresh(lab, lab.oauth.refresh_token(USER))
    assert outcome.result.status is Status.PASS, outcome.result
    assert outcome.token is not None
    sent = lab.oauth.token_requests[-1]
    assert sent["grant_type"] == "refresh_token" and sent["client_id"] == "lab-client"
    account = parse_account(lab.account(USER), env={}, tokens=OAuthTokens.both(outcome.token, "a refresh"))
    report = await run_checks(account, options=_options(lab), specs=[*smtp.CHECKS, *imap.CHECKS])
    assert report.check("smtp.login").status is Status.PASS
    assert report.check("imap.login").status is Status.PASS


@pytest.mark.parametrize(
    ("refresh_token", "code"),
    [
        ("expired", "oauth.token.refresh_expired"),
        ("revoked", "oauth.token.invalid_grant"),
        ("no-consent", "oauth.token.consent_missing"),
        (f"narrow-scope:{USER}", "oauth.token.scope_missing"),
        ("bad-scope", "oauth.token.invalid_scope"),
        ("mfa", "oauth.token.rejected"),
    ],
)
async def test_refresh_refusals_each_have_their_code(lab: Any, refresh_token: str, code: str) -> None:
    outcome = await _refresh(lab, refresh_token)
    assert [f.code for f in outcome.result.findings] == [code]
    assert outcome.result.status is Status.FAIL


async def test_a_wrong_client_is_invalid_client(lab: Any) -> None:
    outcome = await _refresh(lab, lab.oauth.refresh_token(USER), client_id="wrong-client")
    assert outcome.token is None
    assert [f.code for f in outcome.result.findings] == ["oauth.token.invalid_client"]


async def test_a_5xx_then_a_good_answer_gives_the_token(lab: Any) -> None:
    outcome = await _refresh(lab, f"flaky:{USER}")
    assert outcome.result.status is Status.PASS, outcome.result
    assert outcome.token is not None and outcome.token.get_secret_value() == lab.oauth.access_token(USER)


async def test_a_refused_refresh_skips_the_logins_and_fails_the_report(lab: Any, tmp_path: Path) -> None:
    outcome = await _refresh(lab, "revoked")
    payload = {k: v for k, v in lab.account(USER).items() if not k.endswith("_password")}
    account = parse_account(payload, env={}, tokens=OAuthTokens.both(outcome.token, "a refresh"))
    report = await run_checks(
        account, options=_options(lab), specs=[*smtp.CHECKS, *imap.CHECKS], leading=(outcome.result,)
    )
    assert report.check("smtp.login").status is Status.SKIPPED
    assert report.check("imap.login").status is Status.SKIPPED
    assert report.verdict.value == "fail"


async def test_an_endpoint_that_does_not_answer_is_could_not_tell() -> None:
    from tests.scenarios import free_port

    request = RefreshRequest(
        provider="microsoft",
        client_id="lab-client",
        refresh_token=SecretStr("lab-rt-unused"),
        token_url=f"http://127.0.0.1:{free_port()}/token",
    )
    outcome = await refresh_access_token(request, step_timeout=2.0)
    assert outcome.token is None
    assert [f.code for f in outcome.result.findings] == ["oauth.token.unavailable"]
    assert outcome.result.status is Status.ERROR
    assert "lab-rt-unused" not in outcome.result.model_dump_json()


def test_oauthbearer_works_for_real_on_postfix_and_dovecot(lab: Any) -> None:
    import base64
    import imaplib
    import smtplib

    credential = Credential.bearer(USER, lab.oauth.access_token(USER))
    smtp_ep = lab.smtp["submission"]
    with smtplib.SMTP(smtp_ep.address, smtp_ep.port, timeout=10) as client:
        client.starttls(context=lab.ssl_context())
        client.ehlo()
        assert "OAUTHBEARER" in client.esmtp_features.get("auth", "").upper()
        code, _ = client.docmd("AUTH", f"OAUTHBEARER {credential.oauthbearer()}")
        assert code == 235
    imap_ep = lab.imap["imaps"]
    with imaplib.IMAP4_SSL(
        imap_ep.address, imap_ep.port, ssl_context=lab.ssl_context(), timeout=10
    ) as imap_client:
        raw = base64.b64decode(credential.oauthbearer())
        status, _ = imap_client.authenticate("OAUTHBEARER", lambda _challenge: raw)
        assert status == "OK"
