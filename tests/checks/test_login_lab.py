"""The SMTP and IMAP login checks against the lab's real Postfix, Dovecot and NSD.

Host names are resolved through the lab's NSD (``--nameserver``), certificates verified against the
lab CA (``--ca-file``). The lab's implicit-TLS submission port is a random high port; the project's rule
puts implicit TLS on 465 only, so that test reaches it through a forwarder on 127.0.0.1:465.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from inboxcheck._models import Account, CheckResult, Report, Severity, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import imap, same_mailbox, smtp
from tests.peers import TcpForwarder

pytestmark = pytest.mark.lab

TIMEOUT = 5.0


def _options(lab: Any, **extra: Any) -> CheckOptions:
    address, port = lab.nameserver
    return CheckOptions(
        timeout=TIMEOUT,
        deadline=30,
        nameservers=(parse_nameserver(f"{address}:{port}"),),
        ca_file=lab.ca_file,
        **extra,
    )


async def _run(lab: Any, payload: dict[str, Any], specs: list[Any], **extra: Any) -> Report:
    return await run_checks(Account.model_validate(payload), options=_options(lab, **extra), specs=specs)


def _codes(result: CheckResult) -> list[str]:
    return [f.code for f in result.findings]


# --- Postfix ---------------------------------------------------------------------------------


async def test_postfix_starttls_and_sasl_login_passes(lab: Any) -> None:
    report = await _run(lab, lab.account(smtp="submission"), smtp.CHECKS)
    result = report.check("smtp.login")
    assert result.status is Status.PASS, result
    assert result.details["tls_mode"] == "starttls"
    assert result.details["authenticated_as"] == lab.account()["smtp_username"]
    steps_detail: Any = result.details["steps"]
    steps = [step["step"] for step in steps_detail]
    assert steps == ["greeting", "ehlo", "starttls", "ehlo_after_tls", "auth_plain"]


async def test_postfix_implicit_tls_on_465_passes(lab: Any) -> None:
    endpoint = lab.smtp["submissions"]
    try:
        forwarder = TcpForwarder(("127.0.0.1", 465), (endpoint.address, endpoint.port))
        await forwarder.__aenter__()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.1:465 here ({exc})")
    try:
        payload = lab.account(smtp="submissions") | {"smtp_port": 465}
        report = await _run(lab, payload, smtp.CHECKS)
    finally:
        await forwarder.__aexit__(None, None, None)
    result = report.check("smtp.login")
    assert result.status is Status.PASS, result
    assert result.details["tls_mode"] == "implicit"


@pytest.mark.parametrize(
    ("endpoint", "code"),
    [
        ("expired", "smtp.tls.cert_expired"),
        ("selfsigned", "smtp.tls.cert_untrusted"),
        ("wrongname", "smtp.tls.hostname_mismatch"),
    ],
)
async def test_postfix_bad_certificates(lab: Any, endpoint: str, code: str) -> None:
    report = await _run(lab, lab.account(smtp=endpoint), smtp.CHECKS)
    result = report.check("smtp.login")
    assert _codes(result) == [code], result
    finding = result.findings[0]
    assert finding.severity is Severity.FAIL
    assert "cert_not_after" in finding.evidence
    if endpoint == "expired":
        assert isinstance(finding.evidence["days_to_expiry"], int) and finding.evidence["days_to_expiry"] < 0
    if endpoint == "selfsigned":
        assert finding.evidence["self_signed"] is True
    if endpoint == "wrongname":
        assert "mail.lab.test" in finding.message


async def test_postfix_without_starttls_gets_no_credential(lab: Any) -> None:
    payload = lab.account(smtp="nostarttls") | {"smtp_use_tls": True}
    report = await _run(lab, payload, smtp.CHECKS)
    result = report.check("smtp.login")
    assert _codes(result) == ["smtp.starttls.unavailable"]
    assert "authenticated_as" not in result.details


async def test_postfix_without_tls_logs_in_only_with_allow_plaintext(lab: Any) -> None:
    payload = lab.account(smtp="nostarttls")
    assert payload["smtp_use_tls"] is False
    refused = (await _run(lab, payload, smtp.CHECKS)).check("smtp.login")
    assert _codes(refused) == ["smtp.tls.disabled"]
    assert "authenticated_as" not in refused.details
    allowed = (await _run(lab, payload, smtp.CHECKS, allow_plaintext=True)).check("smtp.login")
    assert _codes(allowed) == ["smtp.tls.disabled"]
    assert allowed.details["authenticated_as"] == payload["smtp_username"]


async def test_postfix_wrong_password(lab: Any) -> None:
    payload = lab.account(smtp="submission") | {"smtp_password": "definitely-wrong"}
    result = (await _run(lab, payload, smtp.CHECKS)).check("smtp.login")
    assert _codes(result) == ["smtp.auth.rejected"]
    reply = result.findings[0].evidence["reply"]
    assert isinstance(reply, str) and reply.startswith("535 5.7.8 Error: authentication failed")


# --- Dovecot ---------------------------------------------------------------------------------


async def test_dovecot_implicit_tls_passes(lab: Any) -> None:
    result = (await _run(lab, lab.account(imap="imaps"), imap.CHECKS)).check("imap.login")
    assert result.status is Status.PASS, result
    assert result.details["tls_mode"] == "implicit"
    assert isinstance(result.details["inbox_messages"], int)


async def test_dovecot_starttls_passes(lab: Any) -> None:
    payload = lab.account(imap="imap_starttls")
    assert payload["imap_use_ssl"] is False
    result = (await _run(lab, payload, imap.CHECKS)).check("imap.login")
    assert result.status is Status.PASS, result
    tls = result.details["tls"]
    assert isinstance(tls, dict) and tls["tls_version"] in ("TLSv1.2", "TLSv1.3")


async def test_dovecot_logindisabled_before_starttls(lab: Any) -> None:
    payload = lab.account(imap="logindisabled")
    result = (await _run(lab, payload, imap.CHECKS)).check("imap.login")
    assert result.status is Status.PASS, result
    assert "LOGINDISABLED" in result.details["capabilities_before_tls"]  # type: ignore[operator]
    assert "LOGINDISABLED" not in result.details["capabilities"]  # type: ignore[operator]


async def test_dovecot_starttls_is_used_even_when_plaintext_is_allowed(lab: Any) -> None:
    # allow_plaintext permits clear text where nothing better is offered; it never skips STARTTLS.
    payload = lab.account(imap="logindisabled")
    result = (await _run(lab, payload, imap.CHECKS, allow_plaintext=True)).check("imap.login")
    assert result.status is Status.PASS, result
    assert _codes(result) == []
    assert "capabilities_before_tls" in result.details


async def test_dovecot_wrong_password(lab: Any) -> None:
    payload = lab.account(imap="imaps") | {"imap_password": "definitely-wrong"}
    start = time.perf_counter()
    result = (await _run(lab, payload, imap.CHECKS)).check("imap.login")
    assert _codes(result) == ["imap.auth.rejected"]
    assert result.findings[0].evidence["reply"] == "NO [AUTHENTICATIONFAILED] Authentication failed."
    assert time.perf_counter() - start < TIMEOUT


@pytest.mark.parametrize(
    ("endpoint", "code"),
    [
        ("expired", "imap.tls.cert_expired"),
        ("selfsigned", "imap.tls.cert_untrusted"),
        ("wrongname", "imap.tls.hostname_mismatch"),
        ("expired_starttls", "imap.tls.cert_expired"),
    ],
)
async def test_dovecot_bad_certificates(lab: Any, endpoint: str, code: str) -> None:
    if endpoint not in lab.imap:
        pytest.skip(f"the lab has no {endpoint} IMAP endpoint")
    result = (await _run(lab, lab.account(imap=endpoint), imap.CHECKS)).check("imap.login")
    assert _codes(result) == [code], result


# --- both ------------------------------------------------------------------------------------


async def test_same_mailbox_for_the_lab_user(lab: Any) -> None:
    report = await _run(lab, lab.account(), [*smtp.CHECKS, *imap.CHECKS, *same_mailbox.CHECKS])
    assert [c.status for c in report.checks] == [Status.PASS] * 3, report.checks


async def test_a_lab_account_on_loopback_addresses_is_not_taken_for_proton_bridge(lab: Any) -> None:
    # 127.0.0.1 is every local relay's, tunnel's and test server's address, not only Proton Bridge's:
    # on the lab's own ports it names no provider, the account is judged as custom, and connect lets it in.
    from inboxcheck._options import Family
    from inboxcheck.platform.connect import connect

    families = frozenset({Family.ACCOUNT, Family.SMTP, Family.IMAP})
    result = await connect(
        lab.account(host_style="address"),
        api_key=None,
        dry_run=True,
        options=_options(lab, families=families),
    )
    report = result.report
    assert report.preset is not None
    assert (report.preset.id, report.preset.matched_by) == ("custom", "inbox_type")
    assert report.check("account.tls").status is Status.PASS
    assert result.gate == "passed", result.blocked_by
