"""The gate: whether an account's checks let it be created, and the daily_limit its create call sends.

One decision for ``connect`` and ``connect --batch`` alike: a batch reads it from the report in its
results log, a single account from the report just made, and both send the same thing.

- A check that failed blocks; so does one that could not tell (nothing is created on a guess); a
  warning blocks only with ``strict``.
- The daily limit is the user's unless none was given or the recommendation is asked for, and is
  never silently raised above what the user asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from inboxcheck._models import Account, Status

__all__ = ["DailyLimitChoice", "GateDecision", "choose_daily_limit", "decide"]


class DailyLimitChoice(BaseModel):
    """The daily_limit sent, where it came from, and why."""

    model_config = ConfigDict(frozen=True)

    value: int
    source: Literal["given", "recommended"]
    requested: int | None
    recommended: int
    note: str


def choose_daily_limit(
    requested: int | None, recommended: int, *, apply_recommended: bool
) -> DailyLimitChoice:
    """The user's limit unless none was given or the recommendation is asked for; never raised."""
    if requested is None or (apply_recommended and recommended < requested):
        return DailyLimitChoice(
            value=recommended,
            source="recommended",
            requested=requested,
            recommended=recommended,
            note=f"no daily_limit was given; using the recommended {recommended}"
            if requested is None
            else f"lowered from {requested} to the recommended {recommended}",
        )
    note = f"keeping the given {requested}"
    if apply_recommended and recommended > requested:
        note += f" (the recommendation, {recommended}, is higher; a limit is never raised silently)"
    elif requested > recommended:
        note += f" (above the recommended {recommended}; --apply-recommended-limit lowers it)"
    return DailyLimitChoice(
        value=requested, source="given", requested=requested, recommended=recommended, note=note
    )


class _Checked(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def status(self) -> Status: ...


class _Limit(Protocol):
    @property
    def value(self) -> int: ...


class Checked(Protocol):
    """What the gate reads of a report: a :class:`~inboxcheck.Report`, or its copy in a results log."""

    @property
    def checks(self) -> Sequence[_Checked]: ...

    @property
    def recommended_daily_limit(self) -> _Limit: ...


@dataclass(frozen=True)
class GateDecision:
    """The checks that block the create (none: it may go ahead), and the daily limit it sends."""

    blocked_by: tuple[str, ...]
    daily_limit: DailyLimitChoice

    @property
    def passed(self) -> bool:
        return not self.blocked_by


def decide(account: Account, report: Checked, *, strict: bool, apply_recommended: bool) -> GateDecision:
    """The gate's decision for ``account`` given its checks' ``report``."""
    blocking = {Status.FAIL, Status.ERROR} | ({Status.WARN} if strict else set())
    return GateDecision(
        blocked_by=tuple(check.name for check in report.checks if check.status in blocking),
        daily_limit=choose_daily_limit(
            account.daily_limit,
            report.recommended_daily_limit.value,
            apply_recommended=apply_recommended,
        ),
    )
