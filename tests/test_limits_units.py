"""The daily-limit recommendation and the warm-up ramp, offline: every branch and every number.

The lab tests in test_limits.py tell the story end to end; these pin the arithmetic, so that a change
of a factor, a bound or a reason is caught without a lab.
"""

from __future__ import annotations

import pytest

from inboxcheck._limits import RAMP_START, RAMP_STEP, STAGE_RANGES, recommend_daily_limit, warmup_ramp
from inboxcheck._models import Finding, RampStep, Severity, Stage
from inboxcheck._presets import Limits, Preset, load_presets


def _finding(code: str, severity: Severity = Severity.FAIL) -> Finding:
    return Finding(code=code, severity=severity, message="m")


def _preset(**limits: int | None) -> Preset:
    base = load_presets().get("custom")
    return base.model_copy(update={"limits": Limits.model_validate(limits)})


def test_the_stage_ranges_are_the_platforms_guidance() -> None:
    assert STAGE_RANGES == {Stage.NEW: (20, 30), Stage.WARMING: (50, 80), Stage.ESTABLISHED: (80, 100)}
    assert (RAMP_START, RAMP_STEP) == (10, 2)


@pytest.mark.parametrize(
    ("stage", "value", "reason"),
    [
        (Stage.NEW, 30, "new mailboxes should send 20-30 a day (the platform's guidance)"),
        (Stage.WARMING, 65, "warming mailboxes should send 50-80 a day (the platform's guidance)"),
        (Stage.ESTABLISHED, 90, "established mailboxes should send 80-100 a day (the platform's guidance)"),
    ],
)
def test_a_clean_domain_gets_the_stage_value(stage: Stage, value: int, reason: str) -> None:
    got = recommend_daily_limit(stage=stage, preset=None)
    assert got.value == value
    assert got.stage is stage
    assert got.stage_range == STAGE_RANGES[stage]
    assert got.provider_cap is None
    assert got.reasons == (reason,)


@pytest.mark.parametrize(
    ("code", "value", "why"),
    [
        ("dns.dkim.missing", 15, "lowered: no DKIM key was found: unsigned mail is filtered harder"),
        ("dns.dmarc.missing", 22, "lowered: no DMARC record: Gmail and Yahoo expect one from bulk senders"),
        (
            "dns.spf.missing",
            22,
            "lowered: no SPF record: receivers cannot tell the sending hosts are authorised",
        ),
    ],
)
@pytest.mark.parametrize("severity", [Severity.FAIL, Severity.WARN])
def test_each_missing_record_lowers_it_by_its_factor(
    code: str, value: int, why: str, severity: Severity
) -> None:
    got = recommend_daily_limit(stage=Stage.NEW, preset=None, findings=[_finding(code, severity)])
    assert got.value == value
    assert got.reasons[1:] == (why,)


@pytest.mark.parametrize("severity", [Severity.INFO, Severity.ERROR])
def test_findings_that_are_not_fail_or_warn_lower_nothing(severity: Severity) -> None:
    # "Could not tell" is no evidence that a record is missing.
    findings = [_finding(code, severity) for code in ("dns.dkim.missing", "dns.spf.missing")]
    assert recommend_daily_limit(stage=Stage.NEW, preset=None, findings=findings).value == 30


def test_penalties_compound_in_a_fixed_order_and_each_is_named() -> None:
    findings = [_finding("dns.spf.missing"), _finding("dns.dmarc.missing"), _finding("dns.dkim.missing")]
    got = recommend_daily_limit(stage=Stage.ESTABLISHED, preset=None, findings=findings)
    # 90 * 0.5 = 45, * 0.75 = 33, * 0.75 = 24 (truncated at each step).
    assert got.value == 24
    assert [reason.split(":")[0] for reason in got.reasons] == [
        "established mailboxes should send 80-100 a day (the platform's guidance)",
        "lowered",
        "lowered",
        "lowered",
    ]
    assert "DKIM" in got.reasons[1] and "DMARC" in got.reasons[2] and "SPF" in got.reasons[3]


def test_other_codes_lower_nothing() -> None:
    got = recommend_daily_limit(stage=Stage.NEW, preset=None, findings=[_finding("dns.mx.missing")])
    assert (got.value, len(got.reasons)) == (30, 1)


def test_the_provider_cap_is_the_lower_of_its_two_limits() -> None:
    got = recommend_daily_limit(stage=Stage.ESTABLISHED, preset=_preset(hard_daily_cap=40, platform_max=50))
    assert (got.value, got.provider_cap) == (40, 40)
    assert got.reasons[-1] == "capped at the provider's limit of 40 a day"
    got = recommend_daily_limit(stage=Stage.ESTABLISHED, preset=_preset(hard_daily_cap=70, platform_max=60))
    assert (got.value, got.provider_cap) == (60, 60)


@pytest.mark.parametrize(("limits", "cap"), [({"hard_daily_cap": 45}, 45), ({"platform_max": 45}, 45)])
def test_either_limit_alone_caps(limits: dict[str, int], cap: int) -> None:
    got = recommend_daily_limit(stage=Stage.WARMING, preset=_preset(**limits))
    assert (got.value, got.provider_cap) == (cap, cap)


def test_a_cap_above_the_value_is_reported_but_changes_nothing() -> None:
    got = recommend_daily_limit(stage=Stage.NEW, preset=_preset(hard_daily_cap=30))
    assert (got.value, got.provider_cap) == (30, 30)
    assert len(got.reasons) == 1
    got = recommend_daily_limit(stage=Stage.NEW, preset=_preset(hard_daily_cap=29))
    assert got.value == 29


def test_a_preset_without_limits_caps_nothing() -> None:
    got = recommend_daily_limit(stage=Stage.NEW, preset=_preset())
    assert (got.value, got.provider_cap) == (30, None)


def test_the_value_never_drops_below_one() -> None:
    findings = [_finding(c) for c in ("dns.dkim.missing", "dns.dmarc.missing", "dns.spf.missing")]
    got = recommend_daily_limit(stage=Stage.NEW, preset=_preset(hard_daily_cap=1), findings=findings)
    assert got.value == 1


@pytest.mark.parametrize(
    ("stage", "has_ramp"), [(Stage.NEW, True), (Stage.WARMING, True), (Stage.ESTABLISHED, False)]
)
def test_the_ramp_leads_to_the_value_except_for_established_mailboxes(stage: Stage, has_ramp: bool) -> None:
    got = recommend_daily_limit(stage=stage, preset=None)
    assert bool(got.ramp) is has_ramp
    if has_ramp:
        assert got.ramp == warmup_ramp(got.value)
        assert got.ramp[-1].daily_limit == got.value


def test_the_ramp_starts_at_ten_and_adds_two_a_day() -> None:
    assert warmup_ramp(15) == (
        RampStep(day=1, daily_limit=10),
        RampStep(day=2, daily_limit=12),
        RampStep(day=3, daily_limit=14),
        RampStep(day=4, daily_limit=15),
    )
    assert len(warmup_ramp(30)) == 11


@pytest.mark.parametrize("target", [1, 9, 10])
def test_a_target_at_or_below_the_start_is_one_day(target: int) -> None:
    assert warmup_ramp(target) == (RampStep(day=1, daily_limit=target),)


def test_the_ramp_takes_its_start_and_step() -> None:
    assert [s.daily_limit for s in warmup_ramp(10, start=1, step=3)] == [1, 4, 7, 10]
    assert [s.day for s in warmup_ramp(10, start=1, step=3)] == [1, 2, 3, 4]


def test_a_penalty_never_takes_a_tiny_value_below_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # No stage today starts low enough for the floor to matter; a range of (1, 1) shows it holds.
    from inboxcheck import _limits

    monkeypatch.setitem(_limits.STAGE_RANGES, Stage.NEW, (1, 1))
    got = recommend_daily_limit(stage=Stage.NEW, preset=None, findings=[_finding("dns.dkim.missing")])
    assert got.value == 1
