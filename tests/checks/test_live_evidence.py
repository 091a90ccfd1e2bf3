"""Live evidence beats offline rules: a predicted failure about a server the live login got into is a
warning; without that login (skipped, or refused) it stays a failure.

A scripted peer on loopback stands in for the provider's host, which the test's DNS server resolves
to 127.0.0.1; the ports are the peer's own, which the provider does not document.
"""

from __future__ import annotations

from typing import Any

import pytest

from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._options import CheckOptions, Family
from inboxcheck._runner import run_checks
from tests.peers import DnsPeer, PeerCerts
from tests.scenarios import ImapScript, SmtpScript, base_payload, peer

GOOGLE = {"smtp_host": "smtp.gmail.com", "imap_host": "imap.gmail.com", "inbox_type": "GOOGLE_WORKSPACE"}
MICROSOFT = {
    "smtp_host": "smtp.office365.com",
    "imap_host": "outlook.office365.com",
    "inbox_type": "OUTLOOK_365",
}


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    hosts = [p[key] for p in (GOOGLE, MICROSOFT) for key in ("smtp_host", "imap_host")]
    return PeerCerts(extra_names=tuple(hosts))


async def _run(payload: dict[str, Any], certs: PeerCerts, *, smtp_auth: str, families: set[Family]) -> Report:
    smtp_script = SmtpScript(tls=certs.server_context(), auth_reply=smtp_auth)
    imap_script = ImapScript(greeting="* OK ready", implicit=True)
    async with (
        DnsPeer() as dns,
        peer(smtp_script) as smtp,
        peer(imap_script, tls=certs.server_context()) as imap,
    ):
        account = Account.model_validate(base_payload(**payload, smtp_port=smtp.port, imap_port=imap.port))
        options = CheckOptions.model_validate(
            {"timeout": 5, "deadline": 20, "nameservers": [dns.nameserver], "families": families}
        )
        return await run_checks(account, options=options, ssl_context=certs.client_context())


def _tls_findings(report: Report, protocol: str) -> list[tuple[Severity, Any]]:
    return [
        (f.severity, f.evidence.get("live_login"))
        for f in report.check("account.tls").findings
        if f"{protocol}_port" in f.evidence
    ]


async def test_a_port_the_provider_does_not_document_but_that_works_is_a_warning(certs: PeerCerts) -> None:
    report = await _run(
        GOOGLE, certs, smtp_auth=SmtpScript.auth_reply, families={Family.ACCOUNT, Family.SMTP, Family.IMAP}
    )
    assert report.check("smtp.login").status is Status.PASS
    assert report.check("imap.login").status is Status.PASS
    [(severity, live)] = _tls_findings(report, "smtp")
    assert severity is Severity.WARN
    assert live is not None and live.startswith("smtp.gmail.com:")
    finding = report.check("account.tls").findings[0]
    assert "works today" in finding.message and "Google" in finding.message
    assert finding.fix is not None and "smtp.gmail.com:587" in finding.fix
    assert [s for s, _ in _tls_findings(report, "imap")] == [Severity.WARN]
    assert report.check("account.tls").status is Status.WARN
    assert report.verdict.value == "warn"


async def test_without_the_login_the_prediction_stands(certs: PeerCerts) -> None:
    # --skip smtp: nothing proves the SMTP port works, so the SMTP rule still fails; IMAP still logs in.
    report = await _run(
        GOOGLE, certs, smtp_auth=SmtpScript.auth_reply, families={Family.ACCOUNT, Family.IMAP}
    )
    assert [s for s, _ in _tls_findings(report, "smtp")] == [Severity.FAIL]
    assert [s for s, _ in _tls_findings(report, "imap")] == [Severity.WARN]
    assert report.check("account.tls").status is Status.FAIL


async def test_a_refused_login_leaves_the_prediction_a_failure(certs: PeerCerts) -> None:
    report = await _run(
        GOOGLE,
        certs,
        smtp_auth="535 5.7.8 Authentication failed",
        families={Family.ACCOUNT, Family.SMTP, Family.IMAP},
    )
    assert report.check("smtp.login").status is Status.FAIL
    assert _tls_findings(report, "smtp") == [(Severity.FAIL, None)]


async def test_a_retired_login_method_that_works_today_is_a_warning(certs: PeerCerts) -> None:
    report = await _run(
        MICROSOFT, certs, smtp_auth=SmtpScript.auth_reply, families={Family.ACCOUNT, Family.SMTP, Family.IMAP}
    )
    assert report.check("imap.login").status is Status.PASS
    [retired] = [
        f for f in report.check("account.auth_policy").findings if f.code == "account.basic_auth_retired"
    ]
    assert retired.severity is Severity.WARN
    assert retired.evidence["live_login"] == f"outlook.office365.com:{report.account.imap_port} (implicit)"
