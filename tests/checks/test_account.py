"""The offline account checks: each finding code from its passing case and each failure mode."""

from __future__ import annotations

from typing import Any

import pytest

from inboxcheck._models import Account, Report, Severity, Stage, Status
from inboxcheck._options import CheckOptions, Family
from inboxcheck._runner import run_checks
from tests.helpers import custom_payload, google_payload

OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


async def _report(payload: dict[str, Any], **options: Any) -> Report:
    opts = OFFLINE.model_copy(update=options) if options else OFFLINE
    return await run_checks(Account.model_validate(payload), options=opts)


def _codes(report: Report, check: str) -> list[tuple[str, Severity]]:
    return [(f.code, f.severity) for f in report.check(check).findings]


async def test_a_clean_google_account_passes_every_offline_check() -> None:
    report = await _report(google_payload())
    assert report.preset is not None and report.preset.id == "google-workspace"
    failing = {c.name: c.findings for c in report.checks if c.status not in (Status.PASS, Status.SKIPPED)}
    assert failing == {}
    assert report.verdict.value == "pass"


async def test_a_clean_custom_account_passes() -> None:
    report = await _report(custom_payload())
    assert report.preset is not None and report.preset.id == "custom"
    assert report.verdict.value == "pass"


# --- account.username_mismatch -------------------------------------------------------------------


async def test_username_not_an_address_where_the_provider_wants_one_fails() -> None:
    report = await _report(google_payload(smtp_username="john"))
    assert ("account.username_mismatch", Severity.FAIL) in _codes(report, "account.usernames")


async def test_username_of_another_address_warns_about_aliases() -> None:
    report = await _report(
        google_payload(smtp_username="sales@company.com", imap_username="sales@company.com")
    )
    codes = _codes(report, "account.usernames")
    assert codes == [("account.username_mismatch", Severity.WARN)] * 2


async def test_smtp_and_imap_of_different_mailboxes_warn() -> None:
    report = await _report(custom_payload(imap_username="other@example.test"))
    [finding] = report.check("account.usernames").findings
    assert finding.code == "account.username_mismatch"
    assert finding.evidence == {"smtp_username": "sam@example.test", "imap_username": "other@example.test"}


async def test_icloud_local_part_for_imap_is_not_a_mismatch() -> None:
    payload = custom_payload(
        email_address="amy@icloud.com",
        smtp_host="smtp.mail.me.com",
        smtp_username="amy@icloud.com",
        imap_host="imap.mail.me.com",
        imap_username="amy",
    )
    report = await _report(payload)
    assert report.preset is not None and report.preset.id == "icloud"
    assert report.check("account.usernames").findings == ()


async def test_icloud_full_address_for_imap_is_not_a_mismatch() -> None:
    # Apple documents that the full address works; the old warning contradicted itself.
    payload = custom_payload(
        email_address="jane@icloud.com",
        smtp_host="smtp.mail.me.com",
        smtp_username="jane@icloud.com",
        imap_host="imap.mail.me.com",
        imap_username="jane@icloud.com",
    )
    report = await _report(payload)
    assert report.check("account.usernames").findings == ()


async def test_username_case_does_not_matter() -> None:
    report = await _report(google_payload(smtp_username="John@Company.com"))
    assert report.check("account.usernames").status is Status.PASS


# --- account.inbox_type_mismatch -----------------------------------------------------------------


async def test_google_hosts_typed_as_custom_warn() -> None:
    report = await _report(google_payload(inbox_type="CUSTOM_SMTP"))
    assert _codes(report, "account.provider") == [("account.inbox_type_mismatch", Severity.WARN)]


async def test_zoho_hosts_typed_as_google_warn() -> None:
    payload = google_payload(smtp_host="smtppro.zoho.com", imap_host="imappro.zoho.com")
    report = await _report(payload)
    assert _codes(report, "account.provider") == [("account.inbox_type_mismatch", Severity.WARN)]
    assert report.preset is not None and report.preset.id == "zoho-org"


async def test_unknown_hosts_typed_as_google_warn_and_name_googles_hosts() -> None:
    # A relay or tunnel in front of Google is a working setup; the logins tell whether it works.
    report = await _report(custom_payload(inbox_type="GOOGLE_WORKSPACE"))
    [finding] = report.check("account.provider").findings
    assert finding.severity is Severity.WARN
    assert finding.fix is not None and "smtp.gmail.com" in finding.fix
    assert report.preset is not None
    assert (report.preset.id, report.preset.matched_by) == ("google-workspace", "inbox_type")


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost", "192.0.2.10"])
async def test_a_custom_account_on_a_shared_host_is_not_taken_for_proton_bridge(host: str) -> None:
    report = await _report(custom_payload(smtp_host=host, smtp_port=10587, imap_host=host, imap_port=10993))
    assert report.preset is not None
    assert (report.preset.id, report.preset.matched_by) == ("custom", "inbox_type")
    assert report.verdict.value == "pass", [c.findings for c in report.checks if c.findings]


async def test_proton_bridge_ports_on_loopback_are_still_bridge() -> None:
    payload = custom_payload(smtp_host="127.0.0.1", smtp_port=1025, imap_host="127.0.0.1", imap_port=1143)
    report = await _report(payload)
    assert report.preset is not None and report.preset.id == "proton-bridge"


async def test_a_google_account_through_a_local_tunnel_is_judged_as_google_not_by_googles_ports() -> None:
    payload = google_payload(smtp_host="127.0.0.1", smtp_port=10587, imap_host="127.0.0.1", imap_port=10993)
    report = await _report(payload)
    assert report.preset is not None and report.preset.id == "google-workspace"
    assert _codes(report, "account.provider") == [("account.inbox_type_mismatch", Severity.WARN)]
    # Google's port table is about Google's hosts, not about a tunnel's.
    assert report.check("account.tls").findings == ()


async def test_hosts_of_two_providers_fail() -> None:
    report = await _report(google_payload(imap_host="imap.mail.yahoo.com"))
    messages = [f.message for f in report.check("account.provider").findings]
    assert any("Yahoo" in m and "Google" in m for m in messages)


async def test_microsoft_hosts_shared_by_two_presets_are_not_a_mismatch() -> None:
    payload = google_payload(
        inbox_type="OUTLOOK_365",
        smtp_host="smtp.office365.com",
        imap_host="outlook.office365.com",
        smtp_password="x",
        imap_password="x",
    )
    report = await _report(payload)
    assert report.check("account.provider").status is Status.PASS


# --- account.tls_port_mismatch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "severity", "text"),
    [
        ({"smtp_port": 465, "smtp_use_tls": False}, Severity.FAIL, "465"),
        ({"imap_port": 993, "imap_use_ssl": False}, Severity.FAIL, "993"),
        ({"imap_port": 143, "imap_use_ssl": True}, Severity.FAIL, "143"),
        ({"smtp_use_tls": False}, Severity.WARN, "unencrypted"),
        ({"smtp_port": 25}, Severity.WARN, "25"),
    ],
)
async def test_port_and_tls_mode_disagree(changes: dict[str, Any], severity: Severity, text: str) -> None:
    report = await _report(custom_payload(**changes))
    findings = report.check("account.tls").findings
    assert (findings[0].code, findings[0].severity) == ("account.tls_port_mismatch", severity)
    assert text in findings[0].message


async def test_tls_off_on_a_provider_that_requires_it_fails() -> None:
    report = await _report(google_payload(smtp_use_tls=False))
    assert ("account.tls_port_mismatch", Severity.FAIL) in _codes(report, "account.tls")


async def test_a_provider_that_offers_only_465_says_so() -> None:
    payload = custom_payload(
        email_address="a@example.com",
        smtp_host="smtp.godaddy-test.invalid",
        smtp_port=587,
        smtp_username="a@example.com",
        imap_host="imap.secureserver.net",
        imap_username="a@example.com",
    )
    payload["smtp_host"] = "smtpout.secureserver.net"
    report = await _report(payload)
    [finding] = report.check("account.tls").findings
    assert "only on 465" in finding.message
    assert finding.fix is not None and "smtpout.secureserver.net:465" in finding.fix


@pytest.mark.parametrize(
    ("host", "port", "imap_host"),
    [
        ("smtp.fastmail.com", 587, "imap.fastmail.com"),
        ("smtp.ionos.com", 465, "imap.ionos.com"),
        ("smtp.yandex.com", 587, "imap.yandex.com"),
        ("smtp.aol.com", 587, "imap.aol.com"),
    ],
)
async def test_documented_settings_pass_offline(host: str, port: int, imap_host: str) -> None:
    # Fastmail 587 STARTTLS, IONOS 465 implicit TLS, Yandex 587, AOL 587 (provider-facts.md corrections).
    payload = custom_payload(
        email_address="a@example.com",
        smtp_host=host,
        smtp_port=port,
        smtp_username="a@example.com",
        imap_host=imap_host,
        imap_username="a@example.com",
    )
    report = await _report(payload)
    assert report.check("account.tls").findings == (), report.check("account.tls")


async def test_yahoo_587_with_starttls_is_fine() -> None:
    payload = custom_payload(
        email_address="a@example.com",
        smtp_host="smtp.mail.yahoo.com",
        smtp_port=587,
        smtp_username="a@example.com",
        imap_host="imap.mail.yahoo.com",
        imap_username="a@example.com",
    )
    report = await _report(payload)
    assert report.check("account.tls").status is Status.PASS


async def test_google_465_implicit_tls_is_fine() -> None:
    report = await _report(google_payload(smtp_port=465))
    assert report.check("account.tls").status is Status.PASS


# --- account.display_name_style ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["JOHN SMITH", "John Smith!!!", "Free $$$ offer", "john@company.com", "www.company.com"]
)
async def test_display_name_style_warns(name: str) -> None:
    report = await _report(google_payload(display_name=name))
    assert {c for c, _ in _codes(report, "account.display_name")} == {"account.display_name_style"}


@pytest.mark.parametrize("name", ["John Smith", "Jürgen Groß, Acme GmbH", "A. O'Neil & Co. (Sales)", "IBM"])
async def test_ordinary_display_names_pass(name: str) -> None:
    report = await _report(google_payload(display_name=name))
    assert report.check("account.display_name").findings == ()


# --- account.app_password_expected ---------------------------------------------------------------


async def test_main_password_for_google_warns_without_revealing_it() -> None:
    report = await _report(google_payload(smtp_password="Hunter2!", imap_password="Hunter2!"))
    findings = report.check("account.app_password").findings
    assert {f.code for f in findings} == {"account.app_password_expected"}
    assert "Hunter2!" not in report.model_dump_json()
    assert findings[0].evidence["length"] == 8


async def test_app_password_with_spaces_is_only_a_note() -> None:
    report = await _report(google_payload(smtp_password="abcd efgh ijkl mnop"))
    check = report.check("account.app_password")
    assert check.status is Status.PASS
    assert [f.severity for f in check.findings] == [Severity.INFO]


async def test_app_password_check_skips_custom_hosts() -> None:
    report = await _report(custom_payload())
    assert report.check("account.app_password").status is Status.SKIPPED


# --- account.daily_limit_high --------------------------------------------------------------------


async def test_limit_above_the_stage_warns() -> None:
    report = await _report(google_payload(daily_limit=80))
    assert _codes(report, "account.daily_limit") == [("account.daily_limit_high", Severity.WARN)]


async def test_limit_fits_a_later_stage() -> None:
    report = await _report(google_payload(daily_limit=80), stage=Stage.WARMING)
    assert report.check("account.daily_limit").status is Status.PASS


async def test_limit_above_the_provider_cap_fails() -> None:
    report = await _report(google_payload(daily_limit=5000))
    [finding] = report.check("account.daily_limit").findings
    assert finding.severity is Severity.FAIL and finding.evidence["cap"] == 2000


async def test_a_consumer_gmail_address_gets_consumer_gmails_cap() -> None:
    # About 500 a day for @gmail.com, not Workspace's 2,000.
    payload = google_payload(
        email_address="jo.doe@gmail.com", smtp_username="jo.doe@gmail.com", imap_username="jo.doe@gmail.com"
    )
    report = await _report({**payload, "daily_limit": 1000})
    [finding] = report.check("account.daily_limit").findings
    assert finding.severity is Severity.FAIL and finding.evidence["cap"] == 500
    workspace = await _report(google_payload(daily_limit=1000))
    assert all(f.evidence.get("cap") != 500 for f in workspace.check("account.daily_limit").findings)


async def test_no_limit_given_passes_and_recommendation_applies() -> None:
    report = await _report(google_payload(daily_limit=...))
    assert report.check("account.daily_limit").status is Status.PASS
    assert report.recommended_daily_limit.value == 30


# --- provider policy -----------------------------------------------------------------------------


async def test_microsoft_imap_basic_auth_is_retired() -> None:
    payload = google_payload(
        inbox_type="OUTLOOK_365",
        smtp_host="smtp.office365.com",
        imap_host="outlook.office365.com",
    )
    report = await _report(payload)
    codes = _codes(report, "account.auth_policy")
    assert ("account.basic_auth_retired", Severity.FAIL) in codes
    assert ("account.smtp_auth_tenant_setting", Severity.INFO) in codes


async def test_outlook_com_is_oauth_only() -> None:
    payload = google_payload(
        inbox_type="OUTLOOK_365",
        smtp_host="smtp-mail.outlook.com",
        imap_host="outlook.office365.com",
    )
    report = await _report(payload)
    assert report.preset is not None and report.preset.id == "outlook-com"
    assert ("account.basic_auth_retired", Severity.FAIL) in _codes(report, "account.auth_policy")
