"""The fleet store's queries (status, history, changes), its pruning, and its webhooks."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck.fleet._db import writing
from inboxcheck.fleet._schema import accounts, changes, reports, webhooks
from inboxcheck.fleet._store_base import (
    DAY,
    QUEUE_NAME,
    SCHEDULE_QUEUE_NAME,
    UnknownAccountError,
    _body,
    _normal,
    iso,
    unpack,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


async def history_document(engine: AsyncEngine, address: str, *, limit: int = 20) -> dict[str, Any]:
    """``fleet history --format json``: ``{"email_address", "reports": [...]}``."""
    return {"email_address": _normal(address), "reports": await history(engine, address, limit=limit)}


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


async def changes_document(
    engine: AsyncEngine, *, since: float | None = None, address: str | None = None
) -> dict[str, Any]:
    """``fleet changes --format json``: ``{"changes": [...]}``."""
    return {"changes": await change_list(engine, since=since, address=address)}


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
    async with writing(engine) as conn:
        done = await conn.execute(
            reports.delete().where(reports.c.checked_at < cutoff, reports.c.id.not_in(sa.select(kept.c.id)))
        )
        return int(done.rowcount or 0)


# The queue's finished jobs (Procrastinate keeps every one, with its events, until deleted): those
# of the fleet's two queues whose last event is older than the cutoff. Waiting and running jobs,
# and so the queueing locks, are never touched; the reports hold what a job did.
_PRUNE_JOBS_SQL: Final = """DELETE FROM procrastinate_jobs AS job
 WHERE job.queue_name IN (:queue, :schedule_queue)
   AND job.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
   AND NOT EXISTS (SELECT 1 FROM procrastinate_events AS event
                    WHERE event.job_id = job.id AND event.at >= to_timestamp(:cutoff))"""


async def prune_jobs(engine: AsyncEngine, *, keep_days: float, now: float) -> int | None:
    """Delete the job queue's finished jobs older than ``keep_days``; how many went, or None when
    the fleet has no queue (SQLite, or ``fleet migrate-queue`` never run)."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.begin() as conn:
        has_queue = (await conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')"))).scalar_one()
        if has_queue is None:
            return None
        done = await conn.execute(
            sa.text(_PRUNE_JOBS_SQL),
            {"cutoff": now - keep_days * DAY, "queue": QUEUE_NAME, "schedule_queue": SCHEDULE_QUEUE_NAME},
        )
        return int(done.rowcount or 0)


async def job_counts(engine: AsyncEngine) -> dict[str, Any] | None:
    """The queue's jobs per round (``{"rounds": {id: {status: count}}, "workers": n}``: waiting,
    running, done, failed, and the workers seen in the last minute); None when the fleet has no
    queue (SQLite, or ``fleet migrate-queue`` never run). Plain SQL: Procrastinate is not imported."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        has_queue = (await conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')"))).scalar_one()
        if has_queue is None:
            return None
        rows = await conn.execute(
            sa.text(
                "SELECT split_part(queueing_lock, ':', 2)::bigint AS round_id, status::text, count(*)"
                " FROM procrastinate_jobs WHERE queue_name = :queue AND queueing_lock LIKE 'round:%'"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            {"queue": QUEUE_NAME},
        )
        rounds: dict[int, dict[str, int]] = {}
        for round_id, status, count in rows:
            rounds.setdefault(int(round_id), {})[status] = int(count)
        workers = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM procrastinate_workers"
                    " WHERE last_heartbeat > now() - interval '1 minute'"
                )
            )
        ).scalar_one()
    return {"rounds": rounds, "workers": int(workers)}


async def add_webhook(engine: AsyncEngine, url: str, *, now: float) -> bool:
    async with writing(engine) as conn:
        exists = (await conn.execute(sa.select(webhooks.c.id).where(webhooks.c.url == url))).first()
        if exists is not None:
            return False
        await conn.execute(webhooks.insert().values(url=url, created_at=now))
        return True


async def list_webhooks(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [row.url for row in await conn.execute(sa.select(webhooks.c.url).order_by(webhooks.c.id))]


async def remove_webhook(engine: AsyncEngine, url: str) -> bool:
    async with writing(engine) as conn:
        return bool((await conn.execute(webhooks.delete().where(webhooks.c.url == url))).rowcount)
