"""One story about the daily limit: the daily-limit check and the report's recommendation agree, in
text and in JSON, and the text says why the recommendation is lower and (with -v) how to ramp up.

The domains are zones the lab's NSD serves: nodmarc.test has SPF and DKIM but no DMARC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from inboxcheck._models import Account, Report, Severity, Stage, Status
from inboxcheck._options import CheckOptions, Family, Nameserver
from inboxcheck._runner import run_checks
from inboxcheck.cli import cli
from tests.helpers import custom_payload

if TYPE_CHECKING:
    from lab import Lab

pytestmark = pytest.mark.lab

# A new mailbox may send 20-30 a day; no DMARC record lowers that by a quarter: int(30 * 0.75).
LOWERED = 22


def _payload(daily_limit: int | None) -> dict[str, Any]:
    payload = custom_payload(
        email_address="dana@nodmarc.test",
        smtp_username="dana@nodmarc.test",
        imap_username="dana@nodmarc.test",
        daily_limit=daily_limit,
    )
    if daily_limit is None:
        del payload["daily_limit"]
    return payload


async def _report(lab: Lab, daily_limit: int | None, **options: Any) -> Report:
    host, port = lab.nameserver
    opts = CheckOptions(
        nameservers=(Nameserver(host=host, port=port),),
        families=frozenset({Family.ACCOUNT, Family.DNS}),
        timeout=2,
        **options,
    )
    return await run_checks(Account.model_validate(_payload(daily_limit)), options=opts)


async def test_a_limit_in_the_stage_range_but_above_the_lowered_recommendation_warns(lab: Lab) -> None:
    report = await _report(lab, 25)
    assert report.recommended_daily_limit.value == LOWERED
    check = report.check("account.daily_limit")
    [finding] = check.findings
    assert (finding.code, finding.severity) == ("account.daily_limit_high", Severity.WARN)
    assert f"{LOWERED} a day" in finding.message and "DMARC" in finding.message
    assert finding.evidence["recommended"] == report.recommended_daily_limit.value
    assert finding.evidence["reasons"] == list(report.recommended_daily_limit.reasons)
    assert "suits" not in check.summary and str(LOWERED) in check.summary


async def test_a_limit_within_the_lowered_recommendation_passes_and_says_so(lab: Lab) -> None:
    report = await _report(lab, 20)
    check = report.check("account.daily_limit")
    assert check.status is Status.PASS
    assert f"{LOWERED} a day is recommended" in check.summary
    assert check.details["recommended"] == report.recommended_daily_limit.value


async def test_no_limit_given_names_the_lowered_recommendation(lab: Lab) -> None:
    report = await _report(lab, None)
    check = report.check("account.daily_limit")
    assert check.status is Status.PASS
    assert f"{LOWERED} a day is recommended" in check.summary and "DMARC" in check.summary


async def test_an_established_mailbox_is_judged_by_the_same_recommendation(lab: Lab) -> None:
    report = await _report(lab, 90, stage=Stage.ESTABLISHED)
    recommended = report.recommended_daily_limit.value
    assert recommended == int(90 * 0.75)
    [finding] = report.check("account.daily_limit").findings
    assert finding.evidence["recommended"] == recommended


def _cli(lab: Lab, tmp_path: Path, *extra: str) -> str:
    path = tmp_path / "account.json"
    path.write_text(json.dumps(_payload(25)), encoding="utf-8")
    host, port = lab.nameserver
    args = ["check", str(path), "--only", "account", "--only", "dns", "--nameserver", f"{host}:{port}"]
    result = CliRunner().invoke(cli, [*args, *extra], env={}, catch_exceptions=False)
    return result.stdout


def test_the_text_report_tells_one_story(lab: Lab, tmp_path: Path) -> None:
    text = _cli(lab, tmp_path)
    assert "daily_limit 25 suits" not in text
    assert f"Recommended daily limit: {LOWERED} a day" in text
    assert "lowered: no DMARC record" in text
    assert "warm-up" not in text
    verbose = _cli(lab, tmp_path, "-v")
    assert (
        f"warm-up: day 1: 10, day 2: 12, day 3: 14, day 4: 16, day 5: 18, day 6: 20, day 7: {LOWERED}"
        in verbose
    )


def test_the_json_report_tells_the_same_story(lab: Lab, tmp_path: Path) -> None:
    report = json.loads(_cli(lab, tmp_path, "--format", "json"))
    [check] = [c for c in report["checks"] if c["name"] == "account.daily_limit"]
    [finding] = check["findings"]
    assert finding["evidence"]["recommended"] == report["recommended_daily_limit"]["value"] == LOWERED


@pytest.mark.parametrize(
    ("requested", "apply", "value", "source", "note"),
    [
        (None, False, 30, "recommended", "no daily_limit was given; using the recommended 30"),
        (None, True, 30, "recommended", "no daily_limit was given; using the recommended 30"),
        (50, True, 30, "recommended", "lowered from 50 to the recommended 30"),
        (50, False, 50, "given", "keeping the given 50 (above the recommended 30; "),
        (20, True, 20, "given", "keeping the given 20 (the recommendation, 30, is higher; "),
    ],
)
def test_daily_limit_choice(requested: int | None, apply: bool, value: int, source: str, note: str) -> None:
    from inboxcheck.platform.gate import choose_daily_limit

    choice = choose_daily_limit(requested, 30, apply_recommended=apply)
    assert (choice.value, choice.source, choice.requested, choice.recommended) == (
        value,
        source,
        requested,
        30,
    )
    assert choice.note.startswith(note)
