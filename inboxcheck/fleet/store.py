"""The fleet's store: async functions over an injectable SQLAlchemy engine.

Every function takes the engine first, so ``fleet`` commands, ``inboxcheck serve`` and queue workers
share one store. Each write is one transaction: a report, its round, the account's new state, its
change and that change's webhook deliveries are recorded together or not at all.
"""

from __future__ import annotations

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
from inboxcheck.fleet.changes import Kind, Schedule, Standing, State, classify, diff_reports, event_type, step

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
    "rekey",
    "remove_account",
    "set_paused",
    "status",
]

_FIELDS: Final = ("smtp_password", "imap_password")
DAY: Final = 86_400.0


class UnknownAccountError(InboxcheckError):
    def __init__(self, address: str) -> None:
        super().__init__(f"{address}: no such account in the fleet (see `inboxcheck fleet list`)")


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _normal(address: str) -> str:
    return address.strip().lower()


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


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
    provider_of: Any = None,
) -> AddResult:
    """Insert or update (by address) every account, passwords encrypted; one transaction.

    Refused when any stored account was encrypted under another key: a fleet has one key.
    """
    result = AddResult()
    async with engine.begin() as conn:
        await _refuse_other_keys(conn, key)
        for account in items:
            address = _normal(account.email_address)
            values = {
                "payload": account.view().model_dump_json(),
                "smtp_password": key.encrypt(address, "smtp_password", account.smtp_password.get_secret_value()),
                "imap_password": key.encrypt(address, "imap_password", account.imap_password.get_secret_value()),
                "key_id": key.id,
                "provider": provider_of(account) if provider_of is not None else None,
                "interval_s": int(interval),
                "updated_at": now,
            }
            existing = (
                await conn.execute(sa.select(accounts.c.id).where(accounts.c.address == address))
            ).scalar_one_or_none()
            if existing is None:
                await conn.execute(
                    accounts.insert().values(
                        address=address,
                        paused=False,
                        next_due=now,
                        state=State.UNKNOWN.value,
                        backoff=0,
                        created_at=now,
                        **values,
                    )
                )
                result.added.append(address)
            else:
                # A changed payload is checked at the next run, whatever its schedule said.
                await conn.execute(
                    accounts.update().where(accounts.c.id == existing).values(next_due=now, **values)
                )
                result.updated.append(address)
    return result


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
        where = accounts.c.paused.is_(False)
        if not all_accounts:
            where = sa.and_(where, accounts.c.next_due <= now)
        ids = [row.id for row in await conn.execute(sa.select(accounts.c.id).where(where).order_by(accounts.c.id))]
        if not ids:
            return None
        round_id = (await conn.execute(rounds.insert().values(started_at=now, planned=len(ids)))).inserted_primary_key[0]
        for start in range(0, len(ids), 1000):
            await conn.execute(
                round_accounts.insert(), [{"round_id": round_id, "account_id": i} for i in ids[start : start + 1000]]
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


async def load_accounts(engine: AsyncEngine, ids: Sequence[int], *, key: FleetKey) -> list[tuple[int, Account]]:
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
                sa.select(accounts.c.id, accounts.c.address, accounts.c.smtp_password, accounts.c.imap_password)
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
                accounts.update().where(accounts.c.id == row.id).values(key_id=new.id, updated_at=now, **values)
            )
        return len(rows)


def pack(report_json: str) -> bytes:
    return zlib.compress(report_json.encode(), 6)


def unpack(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(zlib.decompress(body))
    return data


def top_cause(report: Report) -> tuple[str | None, str | None]:
    """The most likely cause, ranked as ``diagnose`` ranks them (weights in diagnosis.toml)."""
    from inboxcheck._diagnose import rank_causes

    causes = rank_causes(report)
    return (causes[0].code, causes[0].message) if causes else (None, None)


@dataclass(frozen=True)
class Recorded:
    """What recording a report did: its id, and the change it made with its event (if any)."""

    report_id: int
    state: State
    change: dict[str, Any] | None = None
    deliveries: tuple[int, ...] = ()


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
    """Record ``report`` for the account in ``round_id`` with everything it changes, in one
    transaction. ``None`` when the round already holds a report of this account (recorded by an
    earlier, interrupted run or by another worker): nothing is written twice.

    ``scrub`` turns the report's JSON into text with no secret (the account's :class:`Scrubber`).
    """
    body = scrub(report.model_dump_json())
    failing = [f.code for f in report.findings() if f.severity.value in ("fail", "error")]
    codes = sorted({f.code for f in report.findings() if f.severity.value in ("warn", "fail", "error")})
    kind = classify(report.verdict.value, failing)
    cause_code, cause_message = top_cause(report)
    async with engine.begin() as conn:
        row = (
            await conn.execute(sa.select(accounts).where(accounts.c.id == account_id).with_for_update())
        ).first()
        if row is None:
            return None  # removed while it was being checked
        if round_id is not None:
            seen = await conn.execute(
                sa.select(reports.c.id).where(reports.c.account_id == account_id, reports.c.round_id == round_id)
            )
            if seen.first() is not None:
                return None
        standing = Standing(
            state=State(row.state),
            since=row.state_since,
            state_report=row.state_report_id,
            pending_report=row.pending_report_id,
            backoff=row.backoff,
        )
        # The report's id is needed by the state machine: insert it first, its state set after.
        report_id = int(
            (
                await conn.execute(
                    reports.insert().values(
                        account_id=account_id,
                        round_id=round_id,
                        checked_at=now,
                        verdict=report.verdict.value,
                        state=standing.state.value,
                        codes=" ".join(codes),
                        body=pack(body),
                    )
                )
            ).inserted_primary_key[0]
        )
        moved = step(
            standing, kind, report_id, now=now, schedule=schedule or Schedule(interval=row.interval_s), draw=draw
        )
        new = moved.standing
        await conn.execute(reports.update().where(reports.c.id == report_id).values(state=new.state.value))
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(
                state=new.state.value,
                state_since=new.since,
                state_report_id=new.state_report,
                pending_report_id=new.pending_report,
                backoff=new.backoff,
                next_due=moved.next_due,
                last_report_id=report_id,
                last_checked=now,
                cause_code=cause_code,
                cause_message=cause_message,
                provider=report.preset.id if report.preset is not None else row.provider,
            )
        )
        if moved.change is None:
            return Recorded(report_id, new.state)
        change = moved.change
        before = await _body(conn, change.before_report)
        after = json.loads(body) if change.after_report == report_id else await _body(conn, change.after_report)
        assert after is not None
        diff = diff_reports(before, after).as_json()
        kind_of_event = event_type(change)
        event_id = f"evt_{uuid.uuid4().hex}"
        change_id = int(
            (
                await conn.execute(
                    changes.insert().values(
                        account_id=account_id,
                        at=now,
                        from_state=change.from_state.value,
                        to_state=change.to_state.value,
                        before_report_id=change.before_report,
                        after_report_id=change.after_report,
                        event_id=event_id,
                        event_type=kind_of_event,
                        diff=json.dumps(diff),
                    )
                )
            ).inserted_primary_key[0]
        )
        described = {
            "email_address": row.address,
            "from": change.from_state.value,
            "to": change.to_state.value,
            "at": iso(now),
            **diff,
        }
        delivery_ids: list[int] = []
        if kind_of_event is not None:
            stored = [r.url for r in await conn.execute(sa.select(webhooks.c.url))]
            for url in dict.fromkeys([*stored, *webhook_urls]):
                delivery_ids.append(
                    int(
                        (
                            await conn.execute(
                                deliveries.insert().values(
                                    change_id=change_id, url=url, status="pending", attempts=0, next_attempt_at=now
                                )
                            )
                        ).inserted_primary_key[0]
                    )
                )
        return Recorded(
            report_id,
            new.state,
            {"event_id": event_id, "type": kind_of_event, "change": described},
            tuple(delivery_ids),
        )


async def _body(conn: AsyncConnection, report_id: int | None) -> dict[str, Any] | None:
    if report_id is None:
        return None
    body = (await conn.execute(sa.select(reports.c.body).where(reports.c.id == report_id))).scalar_one_or_none()
    return unpack(body) if body is not None else None


async def status(engine: AsyncEngine) -> list[dict[str, Any]]:
    """One row per account: its verdict now, since when, last checked, and the top cause."""
    query = sa.select(
        accounts.c.address,
        accounts.c.state,
        accounts.c.state_since,
        accounts.c.last_checked,
        accounts.c.cause_code,
        accounts.c.cause_message,
    ).order_by(accounts.c.address)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "email_address": address,
            "verdict": state,
            "since": iso(since),
            "checked_at": iso(checked),
            "cause": {"code": code, "message": message} if code is not None else None,
        }
        for address, state, since, checked, code, message in rows
    ]


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
