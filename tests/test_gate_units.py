"""The gate's decision, offline: which checks block the create (fail and could-not-tell always,
warnings only with strict), and the daily_limit sent (the user's unless none was given or the lower
recommendation is asked for; never raised). Tested through ``decide`` and ``choose_daily_limit`` only,
with a report reduced to what the gate reads, so it holds whatever the report's class becomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from inboxcheck._models import Account, Status
from inboxcheck.platform.gate import DailyLimitChoice, choose_daily_limit, decide
from tests.helpers import custom_payload


@dataclass(frozen=True)
class Check:
    name: str
    status: Status


@dataclass(frozen=True)
class Limit:
    value: int


@dataclass(frozen=True)
class Checked:
    checks: Sequence[Check]
    recommended_daily_limit: Limit


def report(statuses: dict[str, Status] | None = None, recommended: int = 30) -> Checked:
    return Checked(
        tuple(Check(name, status) for name, status in (statuses or {}).items()), Limit(recommended)
    )


def account(daily_limit: int | None = None) -> Account:
    return Account.model_validate(custom_payload(daily_limit=daily_limit if daily_limit is not None else ...))


EVERY_STATUS = {f"check_{status.value}": status for status in Status}


def test_failures_and_could_not_tell_block_and_nothing_else_does() -> None:
    decision = decide(account(), report(EVERY_STATUS), strict=False, apply_recommended=False)
    assert decision.blocked_by == ("check_fail", "check_error")
    assert decision.passed is False


def test_strict_also_blocks_on_warnings() -> None:
    decision = decide(account(), report(EVERY_STATUS), strict=True, apply_recommended=False)
    assert decision.blocked_by == ("check_warn", "check_fail", "check_error")
    assert decision.passed is False


@pytest.mark.parametrize("strict", [False, True])
def test_passing_skipped_and_no_checks_let_the_create_go_ahead(strict: bool) -> None:
    for checks in ({}, {"a": Status.PASS, "b": Status.SKIPPED}):
        decision = decide(account(), report(checks), strict=strict, apply_recommended=False)
        assert decision.blocked_by == ()
        assert decision.passed is True


def test_a_warning_alone_passes_unless_strict() -> None:
    warned = report({"dns_spf": Status.WARN, "smtp_login": Status.PASS})
    assert decide(account(), warned, strict=False, apply_recommended=False).passed is True
    assert decide(account(), warned, strict=True, apply_recommended=False).blocked_by == ("dns_spf",)


def test_blocking_checks_keep_the_reports_order_and_repeats() -> None:
    checks = Checked((Check("z", Status.ERROR), Check("a", Status.FAIL), Check("z", Status.FAIL)), Limit(30))
    assert decide(account(), checks, strict=False, apply_recommended=False).blocked_by == ("z", "a", "z")


def test_the_decision_carries_the_daily_limit_from_the_account_and_the_report() -> None:
    decision = decide(account(80), report(recommended=25), strict=False, apply_recommended=True)
    assert decision.daily_limit == choose_daily_limit(80, 25, apply_recommended=True)
    assert decision.daily_limit.value == 25
    kept = decide(account(80), report(recommended=25), strict=False, apply_recommended=False)
    assert kept.daily_limit.value == 80
    assert (
        decide(account(), report(recommended=25), strict=False, apply_recommended=False).daily_limit.value
        == 25
    )


# --- the daily limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("apply_recommended", [False, True])
def test_no_limit_given_sends_the_recommended_one(apply_recommended: bool) -> None:
    assert choose_daily_limit(None, 30, apply_recommended=apply_recommended) == DailyLimitChoice(
        value=30,
        source="recommended",
        requested=None,
        recommended=30,
        note="no daily_limit was given; using the recommended 30",
    )


def test_asked_for_the_recommendation_a_higher_limit_is_lowered() -> None:
    assert choose_daily_limit(80, 30, apply_recommended=True) == DailyLimitChoice(
        value=30,
        source="recommended",
        requested=80,
        recommended=30,
        note="lowered from 80 to the recommended 30",
    )


def test_a_limit_is_never_raised_to_the_recommendation() -> None:
    assert choose_daily_limit(10, 30, apply_recommended=True) == DailyLimitChoice(
        value=10,
        source="given",
        requested=10,
        recommended=30,
        note="keeping the given 10 (the recommendation, 30, is higher; a limit is never raised silently)",
    )


def test_a_given_limit_above_the_recommendation_is_kept_and_said_so() -> None:
    assert choose_daily_limit(80, 30, apply_recommended=False) == DailyLimitChoice(
        value=80,
        source="given",
        requested=80,
        recommended=30,
        note="keeping the given 80 (above the recommended 30; --apply-recommended-limit lowers it)",
    )


@pytest.mark.parametrize("apply_recommended", [False, True])
def test_a_given_limit_equal_to_the_recommendation_is_simply_kept(apply_recommended: bool) -> None:
    choice = choose_daily_limit(30, 30, apply_recommended=apply_recommended)
    assert (choice.value, choice.source, choice.note) == (30, "given", "keeping the given 30")


def test_a_given_limit_below_the_recommendation_is_kept_without_a_remark() -> None:
    choice = choose_daily_limit(10, 30, apply_recommended=False)
    assert (choice.value, choice.source, choice.note) == (10, "given", "keeping the given 10")
