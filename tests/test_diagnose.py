"""diagnose against the lab: ranked causes, alternates that work, notices beyond a preflight."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inboxcheck._diagnose import _candidates, diagnose, look_further, weight_of
from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode
from inboxcheck._models import Account, InboxType, Report, Severity
from inboxcheck._options import CheckOptions, Family, parse_nameserver
from inboxcheck._presets import Preset, PresetEndpoint, Presets, ServiceSpec, load_presets
from lab import Lab
from tests.helpers import custom_payload


def _options(lab: Lab, *families: Family) -> CheckOptions:
    host, port = lab.nameserver
    return CheckOptions(
        nameservers=(parse_nameserver(f"{host}:{port}"),),
        ca_file=lab.ca_file,
        timeout=3,
        deadline=30,
        families=frozenset(families or Family),
    )


def _lab_presets(lab: Lab) -> Presets:
    """The bundled presets plus one describing the lab as a provider with two SMTP and IMAP ports."""
    smtp = ServiceSpec(
        endpoints=(
            PresetEndpoint(
                host="mail.lab.test", port=lab.smtp["submission"].port, tls=TlsMode.STARTTLS, preferred=True
            ),
            PresetEndpoint(host="mail.lab.test", port=lab.smtp["submissions"].port, tls=TlsMode.IMPLICIT),
        )
    )
    imap = ServiceSpec(
        endpoints=(
            PresetEndpoint(
                host="mail.lab.test", port=lab.imap["imaps"].port, tls=TlsMode.IMPLICIT, preferred=True
            ),
            PresetEndpoint(host="mail.lab.test", port=lab.imap["imap_starttls"].port, tls=TlsMode.STARTTLS),
        )
    )
    labp = Preset(id="lab-mail", name="Lab Mail", inbox_type=InboxType.CUSTOM_SMTP, smtp=smtp, imap=imap)
    return Presets([*load_presets(), labp])


def _account(lab: Lab, **changes: Any) -> Account:
    payload = lab.account("alice@lab.test", smtp="submission", imap="imaps")
    payload.update(changes)
    return Account.model_validate(payload)


@pytest.mark.lab
async def test_a_port_without_starttls_finds_the_port_that_works(lab: Lab) -> None:
    account = _account(lab, smtp_port=lab.smtp["nostarttls"].port)
    result = await diagnose(account, options=_options(lab, Family.SMTP), presets=_lab_presets(lab))
    assert result.causes[0].code == "smtp.starttls.unavailable"
    by_port = {alt.port: alt.result for alt in result.alternatives}
    assert by_port[lab.smtp["submission"].port] == "works"
    # Implicit TLS on a port other than 465 cannot be written in the payload (smtp_use_tls means
    # STARTTLS there), so the lab's implicit-TLS port is no candidate.
    assert lab.smtp["submissions"].port not in by_port
    assert result.suggested_changes == {
        "smtp_host": "mail.lab.test",
        "smtp_port": lab.smtp["submission"].port,
        "smtp_use_tls": True,
    }
    assert result.exit_code == 1


@pytest.mark.lab
async def test_imap_implicit_tls_on_a_starttls_port_is_fixed_by_the_alternate(lab: Lab) -> None:
    account = _account(lab, imap_port=lab.imap["imap_starttls"].port, imap_use_ssl=True)
    result = await diagnose(account, options=_options(lab, Family.IMAP), presets=_lab_presets(lab))
    working = [a for a in result.alternatives if a.result == "works"]
    assert working, [a.model_dump() for a in result.alternatives]
    assert result.suggested_changes["imap_use_ssl"] in (True, False)
    assert result.suggested_changes["imap_port"] in (lab.imap["imaps"].port, lab.imap["imap_starttls"].port)


@pytest.mark.lab
async def test_the_same_port_in_the_other_tls_mode_is_tried_first(lab: Lab) -> None:
    port = lab.imap["imap_starttls"].port
    account = _account(lab, imap_port=port, imap_use_ssl=True)
    result = await diagnose(account, options=_options(lab, Family.IMAP), presets=_lab_presets(lab))
    assert result.causes[0].code == "imap.tls.mode_mismatch"
    first = result.alternatives[0]
    assert (first.port, first.tls, first.result) == (port, TlsMode.STARTTLS, "works")
    assert result.suggested_changes == {
        "imap_host": "mail.lab.test",
        "imap_port": port,
        "imap_use_ssl": False,
    }


@pytest.mark.lab
async def test_a_mode_mismatch_on_a_port_no_preset_knows_is_fixed_on_that_port(lab: Lab) -> None:
    # The bundled presets only: nothing but the account's own port can work (the lab's ports are not
    # 993/143), so only the same port in the other mode finds the fix.
    port = lab.imap["imaps"].port
    account = _account(lab, imap_port=port, imap_use_ssl=False)
    result = await diagnose(account, options=_options(lab, Family.IMAP), presets=load_presets())
    assert result.causes[0].code == "imap.tls.mode_mismatch"
    assert (result.alternatives[0].port, result.alternatives[0].tls) == (port, TlsMode.IMPLICIT)
    assert result.suggested_changes == {"imap_host": "mail.lab.test", "imap_port": port, "imap_use_ssl": True}


@pytest.mark.lab
async def test_smtp_use_tls_false_is_no_tls_and_starttls_on_the_same_port_is_tried_first(lab: Lab) -> None:
    # smtp_use_tls false means no TLS at all (the one rule, Account.endpoint), so STARTTLS on the
    # account's own port is another endpoint worth trying, and the fix is to turn the flag on.
    port = lab.smtp["submission"].port
    account = _account(lab, smtp_port=port, smtp_use_tls=False)
    result = await diagnose(account, options=_options(lab, Family.SMTP), presets=_lab_presets(lab))
    assert result.causes[0].code == "smtp.tls.disabled"
    first = result.alternatives[0]
    assert (first.port, first.tls, first.result) == (port, TlsMode.STARTTLS, "works")
    assert result.suggested_changes == {"smtp_host": "mail.lab.test", "smtp_port": port, "smtp_use_tls": True}


def test_the_alternates_start_from_the_payloads_own_endpoint() -> None:
    presets = load_presets()
    account = Account.model_validate(custom_payload(smtp_port=587, smtp_use_tls=False))
    own = [c.endpoint for c in _candidates(account, "smtp", None, presets)]
    assert own[0] == Endpoint(
        protocol=MailProtocol.SMTP, host="mail.example.test", port=587, tls=TlsMode.STARTTLS
    )
    account = Account.model_validate(custom_payload(smtp_port=465, smtp_use_tls=True))
    keys = [c.endpoint.key for c in _candidates(account, "smtp", None, presets)]
    assert ("smtp", "mail.example.test", 465, "implicit") not in keys  # the account's own endpoint
    assert ("smtp", "mail.example.test", 587, "starttls") in keys


@pytest.mark.lab
async def test_a_wrong_password_is_ranked_first_and_no_alternate_is_tried(lab: Lab) -> None:
    account = _account(lab, smtp_password="wrong-password-1", imap_password="wrong-password-1")
    result = await diagnose(account, options=_options(lab), presets=_lab_presets(lab))
    assert result.causes[0].code in ("smtp.auth.rejected", "imap.auth.rejected")
    assert {c.code for c in result.causes[:2]} == {"smtp.auth.rejected", "imap.auth.rejected"}
    assert result.alternatives == ()
    assert result.suggested_changes == {}
    assert "wrong-password-1" not in result.model_dump_json()


@pytest.mark.lab
async def test_a_healthy_account_has_no_causes_and_tries_nothing(lab: Lab) -> None:
    result = await diagnose(_account(lab), options=_options(lab), presets=_lab_presets(lab))
    assert [c.code for c in result.causes if c.severity is Severity.FAIL] == []
    assert result.alternatives == ()
    assert result.exit_code == 0


@pytest.mark.lab
async def test_a_dkim_key_that_changed_since_an_earlier_report_is_noticed(lab: Lab) -> None:
    options = _options(lab, Family.DNS).model_copy(update={"dkim_selectors": ("lab",)})
    first = await diagnose(_account(lab), options=options, try_alternates=False)
    data = json.loads(first.report.model_dump_json())
    dkim = next(c for c in data["checks"] if c["name"] == "dns.dkim")
    assert list(dkim["details"]["keys"]) == ["lab"]
    selector = "lab"
    dkim["details"]["keys"][selector]["record"] = "v=DKIM1; k=rsa; p=OLDKEY"
    previous = Report.model_validate(data)
    again = await diagnose(_account(lab), options=options, previous=previous, try_alternates=False)
    [notice] = [n for n in again.notices if n.code == "diagnose.dkim_key_changed"]
    assert notice.evidence["selector"] == selector
    assert notice.evidence["before"] == "v=DKIM1; k=rsa; p=OLDKEY"
    unchanged = await diagnose(_account(lab), options=options, previous=first.report, try_alternates=False)
    assert [n.code for n in unchanged.notices] == []


def test_ranking_follows_the_weight_table() -> None:
    assert weight_of("smtp.auth.app_password_required") > weight_of("smtp.auth.rejected")
    assert weight_of("smtp.auth.rejected") > weight_of("smtp.tls.cert_expired") > weight_of("dns.spf.missing")
    assert weight_of("unknown.code") == 0


def _report_with(*checks: tuple[str, dict[str, Any]]) -> Report:
    from datetime import UTC, datetime

    from inboxcheck._limits import recommend_daily_limit
    from inboxcheck._models import CheckResult, Stage, Status, Verdict
    from tests.helpers import custom_payload

    results = tuple(
        CheckResult(name=name, title=name, status=Status.PASS, summary="ok", duration_ms=1, details=details)
        for name, details in checks
    )
    return Report(
        generated_at=datetime.now(UTC),
        duration_ms=1,
        account=Account.model_validate(custom_payload()).view(),
        preset=None,
        checks=results,
        verdict=Verdict.PASS,
        counts={Status.PASS: len(results)},
        recommended_daily_limit=recommend_daily_limit(stage=Stage.NEW, preset=None),
    )


def test_notices_a_preflight_does_not_need() -> None:
    report = _report_with(
        ("smtp.login", {"tls": {"days_to_expiry": 12, "cert_not_after": "2026-12-08T00:00:00+00:00"}}),
        ("imap.login", {"tls": {"days_to_expiry": 200}}),
        ("dns.spf", {"headroom": 1, "lookup_count": 9}),
        ("dns.mx", {"mx": [{"preference": 10, "host": "mx.new.test"}]}),
    )
    previous = _report_with(("dns.mx", {"mx": [{"preference": 10, "host": "mx.old.test"}]}))
    notices = {n.code: n for n in look_further(report, previous)}
    assert set(notices) == {"diagnose.cert_expiring_soon", "diagnose.spf_headroom_low", "diagnose.mx_changed"}
    assert notices["diagnose.cert_expiring_soon"].evidence["days_to_expiry"] == 12
    assert "SMTP" in notices["diagnose.cert_expiring_soon"].message
    assert notices["diagnose.spf_headroom_low"].evidence["headroom"] == 1


def test_no_notices_for_a_comfortable_domain() -> None:
    report = _report_with(
        ("smtp.login", {"tls": {"days_to_expiry": 60}}),
        ("dns.spf", {"headroom": 5, "lookup_count": 5}),
        ("dns.mx", {"mx": [{"preference": 10, "host": "mx.same.test"}]}),
    )
    assert look_further(report, report) == ()


def test_oauth_and_the_microsoft_change_have_their_place_in_the_ranking() -> None:
    assert weight_of("oauth.token.invalid_grant") > weight_of("smtp.auth.rejected")
    assert weight_of("smtp.auth.token_rejected") == weight_of("smtp.auth.rejected")
    assert weight_of("smtp.auth.basic_auth_retired") > weight_of("smtp.auth.basic_auth_ending")
    assert weight_of("smtp.auth.basic_auth_ending") > weight_of("dns.dkim.missing")
