"""The fleet's state machine and report diff: pure, every transition, no I/O."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, strategies as st

from inboxcheck.fleet.changes import (
    Kind,
    Schedule,
    Standing,
    State,
    classify,
    diff_reports,
    event_type,
    step,
)

SCHEDULE = Schedule(interval=86_400, confirm_after=300, backoff_base=300, jitter=0.1)
NOW = 1_000_000.0


def _run(kinds: list[Kind], start: Standing | None = None) -> list[tuple[State, str | None]]:
    standing = start or Standing()
    out = []
    for report, kind in enumerate(kinds, start=1):
        moved = step(standing, kind, report, now=NOW + report, schedule=SCHEDULE, draw=0.5)
        standing = moved.standing
        out.append((standing.state, event_type(moved.change) if moved.change else None))
    return out


@pytest.mark.parametrize(
    ("verdict", "codes", "kind"),
    [
        ("pass", [], Kind.PASS),
        ("warn", [], Kind.WARN),
        ("fail", ["smtp.auth.rejected"], Kind.DEFINITE),
        ("error", ["dns.mx.timeout"], Kind.UNKNOWN),
        ("fail", ["smtp.reply.temporary"], Kind.TEMPORARY),
        ("error", ["imap.reply.temporary"], Kind.TEMPORARY),
        # A connection limit beside a definite failure: still only "later", never broken.
        ("fail", ["imap.connections.limit", "smtp.auth.rejected"], Kind.TEMPORARY),
    ],
)
def test_reports_are_classified_by_verdict_and_temporary_codes(
    verdict: str, codes: list[str], kind: Kind
) -> None:
    assert classify(verdict, codes) is kind


def test_one_definite_failure_is_only_suspected_and_checked_again_soon() -> None:
    standing = Standing(state=State.PASS, state_report=7)
    moved = step(standing, Kind.DEFINITE, 8, now=NOW, schedule=SCHEDULE, draw=0.0)
    assert moved.change is None
    assert moved.standing.state is State.PASS and moved.standing.pending_report == 8
    assert moved.next_due == NOW + SCHEDULE.confirm_after


def test_a_confirmed_failure_is_broken_and_the_change_spans_last_pass_to_first_failure() -> None:
    standing = Standing(state=State.PASS, state_report=7)
    first = step(standing, Kind.DEFINITE, 8, now=NOW, schedule=SCHEDULE, draw=0.0)
    second = step(first.standing, Kind.DEFINITE, 9, now=NOW + 300, schedule=SCHEDULE, draw=0.0)
    assert second.standing.state is State.BROKEN
    assert second.change is not None
    assert (second.change.before_report, second.change.after_report) == (7, 8)
    assert event_type(second.change) == "inbox.broken"


def test_a_blip_between_passes_fires_nothing() -> None:
    assert _run([Kind.PASS, Kind.DEFINITE, Kind.PASS]) == [
        (State.PASS, None),
        (State.PASS, None),
        (State.PASS, None),
    ]


def test_temporary_replies_degrade_with_growing_backoff_and_never_break() -> None:
    standing = Standing(state=State.PASS, state_report=1)
    dues = []
    for report in range(2, 12):
        moved = step(standing, Kind.TEMPORARY, report, now=NOW, schedule=SCHEDULE, draw=0.0)
        standing = moved.standing
        dues.append(moved.next_due - NOW)
        assert standing.state is State.DEGRADED
    assert dues[:4] == [300, 600, 1200, 2400]
    assert max(dues) == SCHEDULE.interval
    assert dues == sorted(dues)


def test_recovery_after_broken_or_degraded_is_an_event() -> None:
    assert _run([Kind.PASS, Kind.DEFINITE, Kind.DEFINITE, Kind.PASS])[-2:] == [
        (State.BROKEN, "inbox.broken"),
        (State.PASS, "inbox.recovered"),
    ]
    assert _run([Kind.PASS, Kind.TEMPORARY, Kind.WARN])[-2:] == [
        (State.DEGRADED, "inbox.degraded"),
        (State.WARN, "inbox.recovered"),
    ]


def test_a_temporary_reply_from_a_broken_account_keeps_it_broken_without_an_event() -> None:
    assert _run([Kind.DEFINITE, Kind.DEFINITE, Kind.TEMPORARY])[-1] == (State.BROKEN, None)


def test_jitter_only_brings_regular_checks_earlier_within_its_fraction() -> None:
    for draw in (0.0, 0.5, 0.999):
        moved = step(Standing(), Kind.PASS, 1, now=NOW, schedule=SCHEDULE, draw=draw)
        assert NOW + SCHEDULE.interval * 0.9 <= moved.next_due <= NOW + SCHEDULE.interval


@given(st.lists(st.sampled_from(list(Kind)), max_size=30))
def test_every_sequence_keeps_the_rules(kinds: list[Kind]) -> None:
    standing = Standing()
    for report, kind in enumerate(kinds, start=1):
        previous = standing
        moved = step(standing, kind, report, now=NOW, schedule=SCHEDULE, draw=0.3)
        standing = moved.standing
        if kind in (Kind.TEMPORARY, Kind.UNKNOWN):
            # "later" never breaks an account, and never repairs one.
            assert standing.state is (State.BROKEN if previous.state is State.BROKEN else State.DEGRADED)
        if standing.state is State.BROKEN and previous.state is not State.BROKEN:
            assert kind is Kind.DEFINITE and previous.pending_report is not None
        if moved.change is not None:
            assert moved.change.from_state is previous.state and moved.change.to_state is standing.state
            assert moved.change.from_state is not moved.change.to_state
        else:
            assert standing.state is previous.state
        assert moved.next_due > NOW


def test_every_pair_of_states_has_the_expected_event() -> None:
    from inboxcheck.fleet.changes import Change

    for a, b in itertools.permutations(list(State), 2):
        event = event_type(Change(a, b, None, 1))
        if b is State.BROKEN:
            assert event == "inbox.broken"
        elif b is State.DEGRADED:
            assert event == "inbox.degraded"
        elif a in (State.BROKEN, State.DEGRADED) and b in (State.PASS, State.WARN):
            assert event == "inbox.recovered"
        else:
            assert event is None


def _report(
    *findings: tuple[str, str, str, dict[str, Any]], details: dict[str, Any] | None = None
) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {}
    for check, code, severity, evidence in findings:
        checks.setdefault(check, {"name": check, "details": {}, "findings": []})["findings"].append(
            {"code": code, "severity": severity, "evidence": evidence}
        )
    for check, value in (details or {}).items():
        checks.setdefault(check, {"name": check, "details": {}, "findings": []})["details"] = value
    return {"checks": list(checks.values())}


def test_the_diff_names_codes_that_appeared_and_went_and_evidence_before_and_after() -> None:
    before = _report(
        ("dns.spf", "dns.spf.softfail_all", "warn", {"record": "v=spf1 include:a ~all"}),
        details={"smtp.login": {"tls": {"tls_version": "TLSv1.3", "cert_issuer": "Lab CA", "waited_s": 0.1}}},
    )
    after = _report(
        ("smtp.login", "smtp.auth.rejected", "fail", {"reply": "535 5.7.8 Error: authentication failed"}),
        ("dns.spf", "dns.spf.softfail_all", "warn", {"record": "v=spf1 ~all"}),
        details={"smtp.login": {"tls": {"tls_version": "TLSv1.2", "cert_issuer": "Lab CA", "waited_s": 3.0}}},
    )
    diff = diff_reports(before, after)
    assert diff.appeared == ("smtp.auth.rejected",)
    assert diff.disappeared == ()
    changed = {e.what: (e.before, e.after) for e in diff.evidence}
    assert changed == {
        "dns.spf:dns.spf.softfail_all.record": ("v=spf1 include:a ~all", "v=spf1 ~all"),
        "smtp.login.tls.tls_version": ("TLSv1.3", "TLSv1.2"),
        "smtp.login:smtp.auth.rejected.reply": (None, "535 5.7.8 Error: authentication failed"),
    }


def test_info_findings_are_not_codes_and_a_first_report_has_no_before() -> None:
    after = _report(("smtp.login", "smtp.login.ok", "info", {}), ("dns.mx", "dns.mx.missing", "fail", {}))
    diff = diff_reports(None, after)
    assert diff.appeared == ("dns.mx.missing",)
    assert diff_reports(after, after).evidence == ()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=10,
    )
)
def test_any_details_diff_against_themselves_to_nothing(details: Any) -> None:
    report = {"checks": [{"name": "x", "details": {"d": details}, "findings": []}]}
    assert diff_reports(report, report).evidence == ()
