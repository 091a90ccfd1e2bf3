"""The fleet's store: async functions over an injectable SQLAlchemy engine.

Every function takes the engine first, so ``fleet`` commands, ``inboxcheck serve`` and queue workers
share one store. Each write is one transaction: a report, its round, the account's new state, its
change and that change's webhook deliveries are recorded together or not at all.
"""

from __future__ import annotations

import functools
import json
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck._errors import InboxcheckError
from inboxcheck.fleet._crypto import FleetKey, WrongKeyError
from inboxcheck.fleet._schema import accounts, changes, deliveries, reports, round_accounts, rounds, webhooks
from inboxcheck.fleet.changes import Schedule, Standing, State, classify, diff_reports, event_type, step

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from inboxcheck._models import Account, Report

__all__ = [
    "AddResult",
    "Recorded",
    "RoundPlan",
    "add_accounts",
    "begin_round",
    "change_list",
    "finish_round",
    "history",
    "list_accounts",
    "load_accounts",
    "prune",
    "record_report",
    "record_reports",
    "rekey",
    "remove_account",
    "set_paused",
    "status",
    "status_document",
]

_FIELDS: Final = ("smtp_password", "imap_password")
DAY: Final = 86_400.0


class UnknownAccountError(InboxcheckError):
    def __init__(self, address: str) -> None:
        super().__init__(f"{address}: no such account in the fleet (see `inboxcheck fleet list`)")


def iso(moment: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC to the second (``2026-12-07T08:00:00Z``).

    ``status`` writes two per account: the date part is remembered per day and the time of day is
    arithmetic, ten times faster than a datetime per call.
    """
    if moment is None:
        return None
    day, seconds = divmod(int(moment), 86_400)
    hours, rest = divmod(seconds, 3600)
    return f"{_date_of_day(day)}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


@functools.lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def _normal(address: str) -> str:
    return address.strip().lower()


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def _refuse_other_keys(conn: AsyncConnection, key: FleetKey) -> None:
    rows = await conn.execute(
        sa.select(accounts.c.address).where(accounts.c.key_id != key.id).order_by(accounts.c.address)
    )
    other = [row.address for row in rows]
    if other:
        raise WrongKeyError(other)


async def add_accounts(
    engine: AsyncEngine,
    items: Iterable[Account],
    *,
    key: FleetKey,
    interval: float,
    now: float,
) -> AddResult:
    """Insert or update (by address) every account, passwords encrypted; one transaction.

    Refused when any stored account was encrypted under another key: a fleet has one key.
    """
    result = AddResult()
    latest: dict[str, Account] = {}
    for account in items:
        # The same address twice in one file: the last one counts, as a second `fleet add` would.
        latest.pop(_normal(account.email_address), None)
        latest[_normal(account.email_address)] = account
    async with engine.begin() as conn:
        await _refuse_other_keys(conn, key)
        addresses = list(latest)
        existing: dict[str, Any] = {}
        for start in range(0, len(addresses), 1000):
            chunk = addresses[start : start + 1000]
            rows = await conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.address,
                    accounts.c.payload,
                    accounts.c.smtp_password,
                    accounts.c.imap_password,
                    accounts.c.interval_s,
                ).where(accounts.c.address.in_(chunk))
            )
            existing.update({row.address: row for row in rows})
        inserts, updates, reschedules = [], [], []
        for address, account in latest.items():
            payload = account.view().model_dump_json()
            old = existing.get(address)
            if old is not None and _same(old, key, payload, account):
                # The same account again (a whole file re-added): its schedule and history stand.
                if old.interval_s == int(interval):
                    result.unchanged.append(address)
                else:
                    reschedules.append({"b_id": old.id, "interval_s": int(interval), "updated_at": now})
                    result.updated.append(address)
                continue
            values = {
                "payload": payload,
                "smtp_password": key.encrypt(
                    address, "smtp_password", account.smtp_password.get_secret_value()
                ),
                "imap_password": key.encrypt(
                    address, "imap_password", account.imap_password.get_secret_value()
                ),
                "key_id": key.id,
                "interval_s": int(interval),
                "updated_at": now,
                # A new or changed payload is checked at the next run, whatever its schedule said.
                "next_due": now,
            }
            if old is not None:
                updates.append({"b_id": old.id, **values})
                result.updated.append(address)
            else:
                inserts.append(
                    {
                        "status_json": status_entry(address, State.UNKNOWN.value, None, None, None, None),
                        "address": address,
                        "paused": False,
                        "state": State.UNKNOWN.value,
                        "backoff": 0,
                        "created_at": now,
                        "provider": None,
                        **values,
                    }
                )
                result.added.append(address)
        if inserts:
            await conn.execute(accounts.insert(), inserts)
        for changed in (updates, reschedules):
            if changed:
                await conn.execute(accounts.update().where(accounts.c.id == sa.bindparam("b_id")), changed)
    return result


def _same(row: Any, key: FleetKey, payload: str, account: Account) -> bool:
    """Whether the stored account is ``account``: the same payload and the same passwords."""
    return row.payload == payload and all(
        key.decrypt(row.address, name, getattr(row, name)) == getattr(account, name).get_secret_value()
        for name in _FIELDS
    )


async def list_accounts(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                accounts.c.address,
                accounts.c.provider,
                accounts.c.interval_s,
                accounts.c.paused,
                accounts.c.next_due,
                accounts.c.state,
            ).order_by(accounts.c.address)
        )
        return [
            {
                "email_address": row.address,
                "provider": row.provider,
                "interval_s": row.interval_s,
                "paused": bool(row.paused),
                "next_due": iso(row.next_due),
                "verdict": row.state,
            }
            for row in rows
        ]


async def remove_account(engine: AsyncEngine, address: str) -> None:
    async with engine.begin() as conn:
        done = await conn.execute(accounts.delete().where(accounts.c.address == _normal(address)))
        if done.rowcount == 0:
            raise UnknownAccountError(address)


async def set_paused(engine: AsyncEngine, address: str, paused: bool, *, now: float) -> None:
    async with engine.begin() as conn:
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            values["next_due"] = now
        done = await conn.execute(
            accounts.update().where(accounts.c.address == _normal(address)).values(**values)
        )
        if done.rowcount == 0:
            raise UnknownAccountError(address)


@dataclass(frozen=True)
class RoundPlan:
    round_id: int
    resumed: bool
    planned: int
    remaining: tuple[int, ...]


async def begin_round(engine: AsyncEngine, *, all_accounts: bool, now: float) -> RoundPlan | None:
    """The round to run: the unfinished one (an interrupted run), else a new one of the due accounts
    (every unpaused account with ``all_accounts``). ``None``: nothing is due."""
    async with engine.begin() as conn:
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
    async with engine.begin() as conn:
        if await _remaining(conn, round_id):
            return False
        await conn.execute(rounds.update().where(rounds.c.id == round_id).values(finished_at=now))
        return True


async def load_accounts(
    engine: AsyncEngine, ids: Sequence[int], *, key: FleetKey
) -> list[tuple[int, Account]]:
    """The accounts ``ids`` with their passwords, or WrongKeyError naming every one ``key`` does not
    open (then none is returned)."""
    from inboxcheck._models import Account

    out: list[tuple[int, Account]] = []
    wrong: list[str] = []
    async with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            rows = await conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.address,
                    accounts.c.payload,
                    accounts.c.smtp_password,
                    accounts.c.imap_password,
                    accounts.c.key_id,
                ).where(accounts.c.id.in_(ids[start : start + 1000]))
            )
            for row in rows:
                secrets = [key.decrypt(row.address, name, getattr(row, name)) for name in _FIELDS]
                if row.key_id != key.id or None in secrets:
                    wrong.append(row.address)
                    continue
                data = json.loads(row.payload)
                data.update(zip(_FIELDS, secrets, strict=True))
                out.append((row.id, Account.model_validate(data)))
    if wrong:
        raise WrongKeyError(sorted(wrong))
    order = {account_id: n for n, account_id in enumerate(ids)}
    out.sort(key=lambda item: order[item[0]])
    return out


async def rekey(engine: AsyncEngine, *, old: FleetKey, new: FleetKey, now: float) -> int:
    """Re-encrypt every account's passwords under ``new``, in one transaction; how many accounts.

    Every row is decrypted before any is written: one that ``old`` does not open leaves all as they were.
    """
    async with engine.begin() as conn:
        rows = list(
            await conn.execute(
                sa.select(
                    accounts.c.id, accounts.c.address, accounts.c.smtp_password, accounts.c.imap_password
                )
            )
        )
        plain: dict[int, list[str | None]] = {
            row.id: [old.decrypt(row.address, name, getattr(row, name)) for name in _FIELDS] for row in rows
        }
        wrong = sorted(row.address for row in rows if None in plain[row.id])
        if wrong:
            raise WrongKeyError(wrong)
        for row in rows:
            values = {
                name: new.encrypt(row.address, name, secret)
                for name, secret in zip(_FIELDS, plain[row.id], strict=True)
                if secret is not None
            }
            await conn.execute(
                accounts.update()
                .where(accounts.c.id == row.id)
                .values(key_id=new.id, updated_at=now, **values)
            )
        return len(rows)


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The primary key an INSERT of one row made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def pack(report_json: str) -> bytes:
    return zlib.compress(report_json.encode(), 6)


def unpack(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(zlib.decompress(body))
    return data


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
    async with engine.begin() as conn:
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


async def _body(conn: AsyncConnection, report_id: int | None) -> dict[str, Any] | None:
    if report_id is None:
        return None
    body = (
        await conn.execute(sa.select(reports.c.body).where(reports.c.id == report_id))
    ).scalar_one_or_none()
    return unpack(body) if body is not None else None


def status_entry(
    address: str,
    state: str,
    since: float | None,
    checked: float | None,
    code: str | None,
    message: str | None,
) -> str:
    """One account's entry of ``fleet status --format json``, as stored in ``accounts.status_json``."""
    return json.dumps(
        {
            "email_address": address,
            "verdict": state,
            "since": iso(since),
            "checked_at": iso(checked),
            "cause": {"code": code, "message": message} if code is not None else None,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


# The whole fleet's status is the stored entries joined, in address order (byte order on both).
_STATUS_SQL: Final = {
    "sqlite": "SELECT group_concat(status_json, ',')"
    " FROM (SELECT status_json FROM accounts ORDER BY address)",
    "postgresql": """SELECT string_agg(status_json, ',' ORDER BY address COLLATE "C") FROM accounts""",
}


async def status_document(engine: AsyncEngine) -> str:
    """``{"accounts": [{"email_address", "verdict", "since", "checked_at", "cause"}]}`` as JSON text."""
    async with engine.connect() as conn:
        joined = (await conn.execute(sa.text(_STATUS_SQL[engine.dialect.name]))).scalar_one()
    return '{"accounts":[' + (joined or "") + "]}"


async def status(engine: AsyncEngine) -> list[dict[str, Any]]:
    """One row per account: its verdict now, since when, last checked, and the top cause."""
    rows: list[dict[str, Any]] = json.loads(await status_document(engine))["accounts"]
    return rows


async def _account_id(conn: AsyncConnection, address: str) -> int:
    found = (
        await conn.execute(sa.select(accounts.c.id).where(accounts.c.address == _normal(address)))
    ).scalar_one_or_none()
    if found is None:
        raise UnknownAccountError(address)
    return int(found)


async def history(engine: AsyncEngine, address: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """The account's reports, newest first: time, verdict, the fleet's state, codes."""
    async with engine.connect() as conn:
        account_id = await _account_id(conn, address)
        rows = await conn.execute(
            sa.select(reports.c.id, reports.c.checked_at, reports.c.verdict, reports.c.state, reports.c.codes)
            .where(reports.c.account_id == account_id)
            .order_by(reports.c.checked_at.desc(), reports.c.id.desc())
            .limit(limit)
        )
        return [
            {
                "report_id": row.id,
                "checked_at": iso(row.checked_at),
                "verdict": row.verdict,
                "state": row.state,
                "codes": row.codes.split(),
            }
            for row in rows
        ]


async def report_body(engine: AsyncEngine, report_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        return await _body(conn, report_id)


async def last_passing_report(engine: AsyncEngine, address: str) -> dict[str, Any] | None:
    """The newest report whose verdict was pass or warn."""
    async with engine.connect() as conn:
        account_id = await _account_id(conn, address)
        body = (
            await conn.execute(
                sa.select(reports.c.body)
                .where(reports.c.account_id == account_id, reports.c.verdict.in_(("pass", "warn")))
                .order_by(reports.c.checked_at.desc(), reports.c.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    return unpack(body) if body is not None else None


async def change_list(
    engine: AsyncEngine, *, since: float | None = None, address: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every change of verdict (oldest first), each with what changed."""
    query = (
        sa.select(
            accounts.c.address,
            changes.c.from_state,
            changes.c.to_state,
            changes.c.at,
            changes.c.event_id,
            changes.c.event_type,
            changes.c.diff,
        )
        .join(accounts, accounts.c.id == changes.c.account_id)
        .order_by(changes.c.at, changes.c.id)
    )
    if since is not None:
        query = query.where(changes.c.at >= since)
    if address is not None:
        query = query.where(accounts.c.address == _normal(address))
    if limit is not None:
        query = query.limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "email_address": row.address,
            "from": row.from_state,
            "to": row.to_state,
            "at": iso(row.at),
            "event_id": row.event_id,
            "event": row.event_type,
            **json.loads(row.diff),
        }
        for row in rows
    ]


async def prune(engine: AsyncEngine, *, keep_days: float, now: float) -> int:
    """Delete reports older than ``keep_days``, except each account's newest report and the reports
    every change points at (the last before it and the first after it). How many went."""
    cutoff = now - keep_days * DAY
    kept = sa.union(
        sa.select(changes.c.before_report_id.label("id")).where(changes.c.before_report_id.is_not(None)),
        sa.select(changes.c.after_report_id.label("id")).where(changes.c.after_report_id.is_not(None)),
        sa.select(accounts.c.last_report_id.label("id")).where(accounts.c.last_report_id.is_not(None)),
        sa.select(accounts.c.state_report_id.label("id")).where(accounts.c.state_report_id.is_not(None)),
        sa.select(accounts.c.pending_report_id.label("id")).where(accounts.c.pending_report_id.is_not(None)),
    ).subquery()
    async with engine.begin() as conn:
        done = await conn.execute(
            reports.delete().where(reports.c.checked_at < cutoff, reports.c.id.not_in(sa.select(kept.c.id)))
        )
        return int(done.rowcount or 0)


async def add_webhook(engine: AsyncEngine, url: str, *, now: float) -> bool:
    async with engine.begin() as conn:
        exists = (await conn.execute(sa.select(webhooks.c.id).where(webhooks.c.url == url))).first()
        if exists is not None:
            return False
        await conn.execute(webhooks.insert().values(url=url, created_at=now))
        return True


async def list_webhooks(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [row.url for row in await conn.execute(sa.select(webhooks.c.url).order_by(webhooks.c.id))]


async def remove_webhook(engine: AsyncEngine, url: str) -> bool:
    async with engine.begin() as conn:
        return bool((await conn.execute(webhooks.delete().where(webhooks.c.url == url))).rowcount)
