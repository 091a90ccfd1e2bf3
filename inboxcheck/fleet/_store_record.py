"""The fleet store's rounds and reports: a round begun and finished, and each report recorded with
its round, the account's new state, its change and that change's webhook deliveries, in one
transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inboxcheck.fleet._db import writing
from inboxcheck.fleet._schema import accounts, changes, deliveries, reports, round_accounts, rounds, webhooks
from inboxcheck.fleet._store_base import _body, _new_id, iso, pack, status_entry
from inboxcheck.fleet.changes import Schedule, Standing, State, classify, diff_reports, event_type, step

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from inboxcheck._models import Report


@dataclass(frozen=True)
class RoundPlan:
    round_id: int
    resumed: bool
    planned: int
    remaining: tuple[int, ...]


async def begin_round(engine: AsyncEngine, *, all_accounts: bool, now: float) -> RoundPlan | None:
    """The round to run: the unfinished one (an interrupted run), else a new one of the due accounts
    (every unpaused account with ``all_accounts``). ``None``: nothing is due."""
    async with writing(engine) as conn:
        open_round = (
            await conn.execute(
                sa.select(rounds.c.id, rounds.c.planned)
                .where(rounds.c.finished_at.is_(None))
                .order_by(rounds.c.id.desc())
                .limit(1)
            )
        ).first()
        if open_round is not None:
            return RoundPlan(open_round.id, True, open_round.planned, await _remaining(conn, open_round.id))
        where: sa.ColumnElement[bool] = accounts.c.paused.is_(False)
        if not all_accounts:
            where = sa.and_(where, accounts.c.next_due <= now)
        ids = [
            row.id
            for row in await conn.execute(sa.select(accounts.c.id).where(where).order_by(accounts.c.id))
        ]
        if not ids:
            return None
        round_id = _new_id(await conn.execute(rounds.insert().values(started_at=now, planned=len(ids))))
        for start in range(0, len(ids), 1000):
            await conn.execute(
                round_accounts.insert(),
                [{"round_id": round_id, "account_id": i} for i in ids[start : start + 1000]],
            )
        return RoundPlan(int(round_id), False, len(ids), tuple(ids))


async def _remaining(conn: AsyncConnection, round_id: int) -> tuple[int, ...]:
    done = sa.select(reports.c.account_id).where(reports.c.round_id == round_id)
    rows = await conn.execute(
        sa.select(round_accounts.c.account_id)
        .join(accounts, accounts.c.id == round_accounts.c.account_id)
        .where(
            round_accounts.c.round_id == round_id,
            round_accounts.c.account_id.not_in(done),
            accounts.c.paused.is_(False),
        )
        .order_by(round_accounts.c.account_id)
    )
    return tuple(row.account_id for row in rows)


async def finish_round(engine: AsyncEngine, round_id: int, *, now: float) -> bool:
    """Close the round if every account in it has its report; whether it was closed."""
    async with writing(engine) as conn:
        if await _remaining(conn, round_id):
            return False
        await conn.execute(rounds.update().where(rounds.c.id == round_id).values(finished_at=now))
        return True


def top_cause(report: Report) -> tuple[str | None, str | None]:
    """The most likely cause, ranked as ``diagnose`` ranks them (weights in diagnosis.toml)."""
    from inboxcheck._diagnose import rank_causes

    causes = rank_causes(report)
    # One line: a message quoting a long server reply is cut, the whole of it stays in the report.
    return (causes[0].code, causes[0].message[:300]) if causes else (None, None)


@dataclass(frozen=True)
class Recorded:
    """What recording a report did: its id, and the change it made with its event (if any)."""

    report_id: int
    state: State
    change: dict[str, Any] | None = None
    deliveries: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReportEntry:
    """One report to record: whose, in which round, and how to scrub it.

    ``scrub`` turns the report's JSON into text with no secret (the account's :class:`Scrubber`);
    ``draw`` is a number in [0, 1) for the schedule's jitter.
    """

    account_id: int
    round_id: int | None
    report: Report
    scrub: Any
    now: float
    draw: float = 0.0


async def record_report(
    engine: AsyncEngine,
    *,
    account_id: int,
    round_id: int | None,
    report: Report,
    scrub: Any,
    now: float,
    schedule: Schedule | None = None,
    draw: float = 0.0,
    webhook_urls: Sequence[str] = (),
) -> Recorded | None:
    """Record one report with everything it changes, in one transaction (see :func:`record_reports`)."""
    entry = ReportEntry(account_id, round_id, report, scrub, now, draw)
    [recorded] = await record_reports(engine, [entry], schedule=schedule, webhook_urls=webhook_urls)
    return recorded


async def record_reports(
    engine: AsyncEngine,
    entries: Sequence[ReportEntry],
    *,
    schedule: Schedule | None = None,
    webhook_urls: Sequence[str] = (),
) -> list[Recorded | None]:
    """Record each report with its round, the account's new state, its change and that change's
    webhook deliveries, all in one transaction (a few statements for the whole group, so a run
    writes as fast as it checks).

    An entry comes back ``None`` when its round already holds a report of that account (recorded by
    an earlier, interrupted run or by another worker) or the account is gone: nothing is written
    twice. ``schedule`` defaults to each account's own interval.
    """
    if not entries:
        return []
    prepared = []
    for entry in entries:
        body = entry.scrub(entry.report.model_dump_json())
        findings = entry.report.findings()
        failing = [f.code for f in findings if f.severity.value in ("fail", "error")]
        codes = sorted({f.code for f in findings if f.severity.value in ("warn", "fail", "error")})
        prepared.append(
            (entry, body, codes, classify(entry.report.verdict.value, failing), top_cause(entry.report))
        )
    ids = sorted({entry.account_id for entry in entries})
    async with writing(engine) as conn:
        rows: dict[int, Any] = {
            row.id: row
            for row in await conn.execute(
                sa.select(accounts).where(accounts.c.id.in_(ids)).order_by(accounts.c.id).with_for_update()
            )
        }
        round_ids = {entry.round_id for entry in entries if entry.round_id is not None}
        seen: set[tuple[int, int]] = set()
        if round_ids:
            seen = {
                (r.account_id, r.round_id)
                for r in await conn.execute(
                    sa.select(reports.c.account_id, reports.c.round_id).where(
                        reports.c.round_id.in_(round_ids), reports.c.account_id.in_(ids)
                    )
                )
            }
        todo = []
        for item in prepared:
            entry = item[0]
            key = (entry.account_id, entry.round_id)
            if entry.account_id not in rows or (entry.round_id is not None and key in seen):
                continue
            if entry.round_id is not None:
                seen.add((entry.account_id, entry.round_id))
            todo.append(item)
        if not todo:
            return [None] * len(entries)
        # The reports' ids are needed by the state machine: inserted first, their state set after.
        # One multi-row INSERT per wave, each account at most once in a wave so that the ids come
        # back by account (asking for them in parameter order makes SQLAlchemy insert row by row).
        waves: list[list[Any]] = []
        occurrences: dict[int, int] = {}
        for item in todo:
            n = occurrences[item[0].account_id] = occurrences.get(item[0].account_id, -1) + 1
            if n == len(waves):
                waves.append([])
            waves[n].append(item)
        report_ids: dict[int, int] = {}
        for wave in waves:
            inserted = await conn.execute(
                reports.insert().returning(reports.c.id, reports.c.account_id),
                [
                    {
                        "account_id": entry.account_id,
                        "round_id": entry.round_id,
                        "checked_at": entry.now,
                        "verdict": entry.report.verdict.value,
                        "state": State.UNKNOWN.value,
                        "codes": " ".join(codes),
                        "body": pack(body),
                    }
                    for entry, body, codes, _kind, _cause in wave
                ],
            )
            by_account = {int(r[1]): int(r[0]) for r in inserted}
            report_ids.update({id(item[0]): by_account[item[0].account_id] for item in wave})
        todo = [item for wave in waves for item in wave]
        results: dict[int, Recorded] = {}
        report_states = []
        account_values = []
        stored_hooks: list[str] | None = None
        quiet: list[dict[str, Any]] = []
        for entry, body, _codes, kind, (cause_code, cause_message) in todo:
            report_id = report_ids[id(entry)]
            row = rows[entry.account_id]
            standing = Standing(
                state=State(row.state),
                since=row.state_since,
                state_report=row.state_report_id,
                pending_report=row.pending_report_id,
                backoff=row.backoff,
            )
            moved = step(
                standing,
                kind,
                report_id,
                now=entry.now,
                schedule=schedule or Schedule(interval=row.interval_s),
                draw=entry.draw,
            )
            new = moved.standing
            report_states.append({"b_id": report_id, "b_state": new.state.value})
            account_values.append(
                {
                    "b_id": entry.account_id,
                    "state": new.state.value,
                    "state_since": new.since,
                    "state_report_id": new.state_report,
                    "pending_report_id": new.pending_report,
                    "backoff": new.backoff,
                    "next_due": moved.next_due,
                    "last_report_id": report_id,
                    "last_checked": entry.now,
                    "cause_code": cause_code,
                    "cause_message": cause_message,
                    "status_json": status_entry(
                        row.address, new.state.value, new.since, entry.now, cause_code, cause_message
                    ),
                    "provider": entry.report.preset.id if entry.report.preset is not None else row.provider,
                }
            )
            # The same account twice in one group: the second sees the first's standing.
            rows[entry.account_id] = _Row(row, new)
            if moved.change is None:
                results[report_id] = Recorded(report_id, new.state)
                continue
            if stored_hooks is None:
                stored_hooks = [
                    r.url for r in await conn.execute(sa.select(webhooks.c.url).order_by(webhooks.c.id))
                ]
            results[report_id] = await _record_change(
                conn,
                row.address,
                entry.account_id,
                moved.change,
                report_id,
                body,
                entry.now,
                [*stored_hooks, *webhook_urls],
                new.state,
                quiet,
            )
        if quiet:
            await conn.execute(changes.insert(), quiet)
        await conn.execute(
            reports.update()
            .where(reports.c.id == sa.bindparam("b_id"))
            .values(state=sa.bindparam("b_state")),
            report_states,
        )
        await conn.execute(accounts.update().where(accounts.c.id == sa.bindparam("b_id")), account_values)
    return [results[report_ids[id(entry)]] if id(entry) in report_ids else None for entry in entries]


class _Row:
    """An account row as the next report of the same group must see it."""

    def __init__(self, row: Any, standing: Standing) -> None:
        self._row = row
        self.state = standing.state.value
        self.state_since = standing.since
        self.state_report_id = standing.state_report
        self.pending_report_id = standing.pending_report
        self.backoff = standing.backoff

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


async def _record_change(
    conn: AsyncConnection,
    address: str,
    account_id: int,
    change: Any,
    report_id: int,
    body: str,
    now: float,
    urls: Sequence[str],
    state: State,
    quiet: list[dict[str, Any]],
) -> Recorded:
    """Record a change; one with no event (a first check, pass <-> warn) is left in ``quiet`` for
    the group's one multi-row insert, as nothing needs its id."""
    before = await _body(conn, change.before_report)
    after = json.loads(body) if change.after_report == report_id else await _body(conn, change.after_report)
    assert after is not None
    diff = diff_reports(before, after).as_json()
    kind_of_event = event_type(change)
    event_id = f"evt_{uuid.uuid4().hex}"
    values = {
        "account_id": account_id,
        "at": now,
        "from_state": change.from_state.value,
        "to_state": change.to_state.value,
        "before_report_id": change.before_report,
        "after_report_id": change.after_report,
        "event_id": event_id,
        "event_type": kind_of_event,
        "diff": json.dumps(diff),
    }
    if kind_of_event is None:
        quiet.append(values)
    else:
        change_id = _new_id(await conn.execute(changes.insert().values(**values)))
    described = {
        "email_address": address,
        "from": change.from_state.value,
        "to": change.to_state.value,
        "at": iso(now),
        **diff,
    }
    delivery_ids: list[int] = []
    if kind_of_event is not None:
        for url in dict.fromkeys(urls):
            done = await conn.execute(
                deliveries.insert().values(
                    change_id=change_id, url=url, status="pending", attempts=0, next_attempt_at=now
                )
            )
            delivery_ids.append(_new_id(done))
    return Recorded(
        report_id,
        state,
        {"event_id": event_id, "type": kind_of_event, "change": described},
        tuple(delivery_ids),
    )
