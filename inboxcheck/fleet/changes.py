"""The fleet's verdict state machine and what changed between two reports. Pure: no I/O, no clock.

States: ``unknown`` (never checked), ``pass``, ``warn``, ``degraded`` (the server said "later" or
"too many connections", or nothing could tell), ``broken`` (a definite failure, seen twice in a row).

- A temporary or connection-limit reply makes an account ``degraded``, re-checked sooner with a
  growing backoff; never ``broken``.
- A definite failure (a refused login, a missing record) is first only *suspected*: the state stays
  and the account is checked again after ``confirm_after`` seconds. The second definite failure in a
  row makes it ``broken``; anything else clears the suspicion. One blip never fires an alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "Diff",
    "Evidence",
    "Kind",
    "Schedule",
    "Standing",
    "State",
    "Step",
    "classify",
    "diff_reports",
    "event_type",
    "step",
]


class State(StrEnum):
    UNKNOWN = "unknown"
    PASS = "pass"
    WARN = "warn"
    DEGRADED = "degraded"
    BROKEN = "broken"


class Kind(StrEnum):
    """What one report says, for the state machine."""

    PASS = "pass"
    WARN = "warn"
    TEMPORARY = "temporary"  # a 4yz / connection-limit reply: try later
    UNKNOWN = "unknown"  # could not tell (timeouts, SERVFAIL)
    DEFINITE = "definite"  # a failure the servers stated


# Codes that mean "later", whatever their severity: never a definite failure.
_TEMPORARY: Final = re.compile(r"^[a-z0-9_]+\.reply\.temporary$|^imap\.connections\.limit$")


def is_temporary(code: str) -> bool:
    return bool(_TEMPORARY.match(code))


def classify(verdict: str, failing_codes: Iterable[str]) -> Kind:
    """``verdict`` is the report's (pass/warn/fail/error); ``failing_codes`` its fail and error codes."""
    codes = list(failing_codes)
    if any(is_temporary(code) for code in codes):
        return Kind.TEMPORARY
    if verdict == "fail":
        return Kind.DEFINITE
    if verdict == "error":
        return Kind.UNKNOWN
    return Kind.WARN if verdict == "warn" else Kind.PASS


@dataclass(frozen=True)
class Standing:
    """An account's state between checks."""

    state: State = State.UNKNOWN
    since: float | None = None
    # The last report that agrees with ``state``: "before" in the next change.
    state_report: int | None = None
    # A definite failure waiting for its confirmation: the report that first showed it.
    pending_report: int | None = None
    backoff: int = 0


@dataclass(frozen=True)
class Schedule:
    interval: float  # seconds between regular checks
    confirm_after: float = 300.0  # a suspected failure is checked again this soon
    backoff_base: float = 300.0  # a degraded account: base * 2**n, at most the interval
    jitter: float = 0.1  # regular checks come up to this fraction of the interval early


@dataclass(frozen=True)
class Change:
    from_state: State
    to_state: State
    before_report: int | None
    after_report: int


@dataclass(frozen=True)
class Step:
    standing: Standing
    next_due: float
    change: Change | None


def event_type(change: Change) -> str | None:
    """The webhook event of a change, if it is one a platform acts on."""
    if change.to_state is State.BROKEN:
        return "inbox.broken"
    if change.to_state is State.DEGRADED:
        return "inbox.degraded"
    if change.from_state in (State.BROKEN, State.DEGRADED) and change.to_state in (State.PASS, State.WARN):
        return "inbox.recovered"
    return None


def step(standing: Standing, kind: Kind, report: int, *, now: float, schedule: Schedule, draw: float) -> Step:
    """The account's standing after ``report`` (of ``kind``), when it is due next, and its change.

    ``draw`` is a number in [0, 1) from the caller's random source: the jitter, kept out of here.
    """
    regular = now + schedule.interval * (1 - schedule.jitter * draw)

    def moved(to: State, *, before: int | None, after: int, due: float, backoff: int = 0) -> Step:
        if to is standing.state:
            new = replace(standing, state_report=report, pending_report=None, backoff=backoff)
            return Step(new, due, None)
        new = Standing(state=to, since=now, state_report=report, pending_report=None, backoff=backoff)
        return Step(new, due, Change(standing.state, to, before, after))

    if kind in (Kind.PASS, Kind.WARN):
        return moved(State(kind.value), before=standing.state_report, after=report, due=regular)
    if kind in (Kind.TEMPORARY, Kind.UNKNOWN):
        backoff = standing.backoff + 1
        sooner = min(schedule.backoff_base * 2 ** (backoff - 1), schedule.interval)
        due = now + sooner * (1 - schedule.jitter * draw)
        if standing.state is State.BROKEN:
            # "Later" from a broken account says nothing about whether it was fixed.
            return Step(replace(standing, pending_report=None, backoff=backoff), due, None)
        return moved(State.DEGRADED, before=standing.state_report, after=report, due=due, backoff=backoff)
    # A definite failure.
    if standing.state is State.BROKEN:
        return Step(replace(standing, state_report=report, backoff=0), regular, None)
    if standing.pending_report is not None:
        return moved(State.BROKEN, before=standing.state_report, after=standing.pending_report, due=regular)
    return Step(replace(standing, pending_report=report), now + schedule.confirm_after, None)


@dataclass(frozen=True)
class Evidence:
    what: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Diff:
    appeared: tuple[str, ...]
    disappeared: tuple[str, ...]
    evidence: tuple[Evidence, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "appeared": list(self.appeared),
            "disappeared": list(self.disappeared),
            "evidence": [{"what": e.what, "before": e.before, "after": e.after} for e in self.evidence],
        }


# Evidence that differs between any two runs and says nothing about the account.
_VOLATILE: Final = re.compile(
    r"(?:^|_)(?:ms|s|seconds)$|^(?:days_to_expiry|duration|elapsed|waited_with|token|message_id|date|at)$"
)
MAX_EVIDENCE: Final = 40


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not _VOLATILE.search(str(key)):
                _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    else:
        out[prefix] = value


def evidence_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """Every fact a report shows (its checks' details and its findings' evidence), by a path."""
    out: dict[str, Any] = {}
    for check in report.get("checks", ()):
        name = check.get("name", "?")
        _flatten(name, check.get("details", {}), out)
        for finding in check.get("findings", ()):
            _flatten(f"{name}:{finding.get('code', '?')}", finding.get("evidence", {}), out)
    return out


def codes_of(report: Mapping[str, Any]) -> set[str]:
    """The codes of the findings that matter (warn, fail, error)."""
    return {
        finding["code"]
        for check in report.get("checks", ())
        for finding in check.get("findings", ())
        if finding.get("severity") in ("warn", "fail", "error")
    }


def diff_reports(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> Diff:
    """What changed from ``before`` (None: nothing known) to ``after``: codes and evidence."""
    old_codes = codes_of(before) if before is not None else set()
    new_codes = codes_of(after)
    old = evidence_of(before) if before is not None else {}
    new = evidence_of(after)
    # The findings' evidence (the server's reply that refused, the record that went) before the
    # details of the checks (every step of a conversation), each group in path order.
    differing = [
        Evidence(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys(), key=lambda path: (":" not in path, path))
        if _canonical(old.get(path)) != _canonical(new.get(path))
    ]
    return Diff(
        appeared=tuple(sorted(new_codes - old_codes)),
        disappeared=tuple(sorted(old_codes - new_codes)),
        evidence=tuple(differing[:MAX_EVIDENCE]),
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
