"""The fleet on a task queue (Procrastinate, in the fleet's own PostgreSQL): many workers, each inbox once.

``schedule`` begins a round (or resumes the open one) and defers one job per account of it that has
no report yet and no job waiting or running; a job's arguments are the account's id and the round's
id, nothing else. A worker takes a job, decrypts the account from the store with the fleet's key,
checks it and records the report with its round in one transaction (``store.record_reports``
refuses a second report of an account in a round), then closes the round when it was the last.

Guarantees and where they come from:

- one queued job per account per round: Procrastinate's queueing lock (``round:account``), and
  ``schedule`` skips accounts whose job is waiting or running;
- one check per mailbox at a time across all workers: Procrastinate's ``lock``, keyed by a digest
  of the IMAP login and host (no address goes into the queue's tables);
- a worker killed mid-check: its heartbeat stops, and any worker retries the jobs of workers not
  seen for ``stalled_after`` seconds; the retried job finds the report if the dead worker had
  recorded it, so the account ends the round with exactly one report;
- SIGTERM: the worker takes no new job, waits ``graceful`` seconds for its running checks, then
  cancels the rest (each stops its logins) and puts them back on the queue, and exits;
- the database restarted or lost: the worker stays up and connects again (``run_worker``); a job
  whose writes failed is retried, and finds its report if it was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import procrastinate
import sqlalchemy as sa
from procrastinate import exceptions
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from inboxcheck._errors import InboxcheckError
from inboxcheck.fleet import store
from inboxcheck.fleet._lost_db import lost_database, quiet_lost_database, reason, shown
from inboxcheck.fleet._runlock import PG_LOCK as RUN_LOCK
from inboxcheck.fleet._schema import accounts, reports
from inboxcheck.fleet._store_base import QUEUE_NAME, SCHEDULE_QUEUE_NAME
from inboxcheck.fleet.webhooks import send_pending, sweep, sweep_once

if TYPE_CHECKING:
    from procrastinate.job_context import JobContext
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck._batch import BatchLine
    from inboxcheck._options import CheckOptions
    from inboxcheck._presets import Presets
    from inboxcheck.fleet._crypto import FleetKey

__all__ = [
    "QUEUE",
    "TASK",
    "QueueError",
    "ScheduleSummary",
    "WorkerState",
    "apply_schema",
    "job_counts",
    "lost_database",
    "make_app",
    "run_worker",
    "schedule_round",
    "sweep",
    "watch_schedule",
]

QUEUE: Final = QUEUE_NAME
TASK: Final = "inboxcheck.fleet.check_account"
SCHEDULE_QUEUE: Final = SCHEDULE_QUEUE_NAME
SCHEDULE_TASK: Final = "inboxcheck.fleet.schedule"
STALLED_AFTER: Final = 30.0
GRACEFUL: Final = 30.0
# Seconds before a worker that lost its database connects again: the first wait, the longest.
RECONNECT: Final = (1.0, 30.0)
# Seconds a job waits for a connection of the queue's pool (psycopg_pool's default is 30): while
# the database is down, each of the worker's queries waits that long before it fails.
POOL_TIMEOUT: Final = 10.0
# Seconds between two sweeps of the webhook deliveries left pending, in each worker.
SWEEP_EVERY: Final = 30.0
# pg_advisory_xact_lock key of `fleet schedule` ("inboxchk" in ASCII).
SCHEDULER_LOCK: Final = 0x696E626F7863686B
log = logging.getLogger("inboxcheck.fleet.queue")


class QueueError(InboxcheckError):
    """The queue cannot be used: a SQLite fleet, the extra missing, its schema not applied."""


def conninfo(url: str) -> str:
    """The libpq URI of a fleet database URL (the queue's connections), or QueueError if not PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise QueueError("the fleet database must be a URL: postgresql://USER@HOST/NAME") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise QueueError(
            "the queue needs a PostgreSQL fleet (postgresql://USER@HOST/NAME); "
            "a SQLite fleet is checked by `inboxcheck fleet run`"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def mailbox_lock(payload: str) -> str:
    """The lock of one mailbox across all workers, from an account's stored payload (no password
    in it): its IMAP login and host, as ``check --batch`` keys a mailbox, so two accounts that log
    in to the same mailbox wait for each other. A digest: the queue holds no address."""
    data = json.loads(payload)
    login = f"imap {str(data.get('imap_username', '')).lower()} {str(data.get('imap_host', '')).lower()}"
    return "mailbox:" + hashlib.sha256(login.encode()).hexdigest()[:32]


def queueing_lock(round_id: int, account_id: int) -> str:
    return f"round:{round_id}:account:{account_id}"


@dataclass
class WorkerState:
    """What every job of one worker process shares: the store, the key, the check's options."""

    engine: AsyncEngine
    key: FleetKey
    options: CheckOptions
    presets: Presets
    webhook_secret: bytes | None = None
    # One for the worker's life: building it (the system's CA store) costs more than a job.
    ssl_context: ssl.SSLContext | None = None
    clock: Any = time.time
    rng: random.Random = field(default_factory=random.Random)
    pace: Any = None


class _Retry(BaseRetryStrategy):
    """Procrastinate's retry strategy for a check: a job cancelled at shutdown or failed by the
    database is retried (a few seconds later); a key that does not open the account is not."""

    max_attempts: Final = 20

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
        from inboxcheck.fleet._crypto import WrongKeyError

        if isinstance(exception, WrongKeyError) or job.attempts >= self.max_attempts:
            return None
        return RetryDecision(retry_in={"seconds": min(2**job.attempts, 60)})


def make_app(url: str, *, schedule_every: int | None = None) -> procrastinate.App:
    """A Procrastinate app on the fleet's PostgreSQL database, with the fleet's check task; with
    ``schedule_every`` (seconds) also the periodic scheduler, which Procrastinate defers once per
    tick whatever the number of workers that have it."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(url), timeout=POOL_TIMEOUT)
    )
    app.task(name=TASK, queue=QUEUE, pass_context=True, retry=_Retry())(check_account)
    if schedule_every is not None:
        cron = (
            f"*/{schedule_every} * * * * *"
            if schedule_every < 60
            else f"*/{max(schedule_every // 60, 1)} * * * *"
        )
        task = app.task(name=SCHEDULE_TASK, queue=SCHEDULE_QUEUE, pass_context=True)(schedule_task)
        app.periodic(cron=cron, periodic_id="fleet")(task)
    return app


async def schedule_task(context: JobContext, timestamp: int) -> str:
    """The periodic task of ``fleet worker --schedule``: queue the accounts that are due."""
    state: WorkerState = (context.additional_context or {})["fleet"]
    summary = await schedule_round(state.engine, context.app, open_app=False)
    return summary.describe()


async def apply_schema(app: procrastinate.App) -> bool:
    """Apply Procrastinate's schema if the database has none; whether it was applied now."""
    async with app.open_async():
        if await app.check_connection_async():
            return False
        await app.schema_manager.apply_schema_async()
        return True


async def _require_schema(app: procrastinate.App) -> None:
    if not await app.check_connection_async():
        raise QueueError("the fleet database has no queue yet: run `inboxcheck fleet migrate-queue`")


@dataclass
class ScheduleSummary:
    round_id: int | None = None
    resumed: bool = False
    planned: int = 0
    queued: int = 0
    already: int = 0
    #: A ``fleet run`` (or ``fleet watch``) was checking a round of this fleet: nothing was queued,
    #: since its accounts would have been checked twice.
    run_busy: bool = False

    def describe(self) -> str:
        if self.run_busy:
            return "a `fleet run` or `fleet watch` is checking this fleet's round: nothing queued"
        if self.round_id is None:
            return "no account is due"
        what = "resumed" if self.resumed else "began"
        return (
            f"{what} round {self.round_id} of {self.planned} accounts: {self.queued} jobs queued, "
            f"{self.already} already queued or running"
        )


async def schedule_round(
    engine: AsyncEngine,
    app: procrastinate.App,
    *,
    all_accounts: bool = False,
    now: float | None = None,
    open_app: bool = True,
) -> ScheduleSummary:
    """Begin a round (or take the open one) and queue a job for each of its accounts still to check.

    ``open_app=False``: the app is open already (inside a worker), and stays so."""
    summary = ScheduleSummary()
    opened = app.open_async() if open_app else contextlib.nullcontext()
    async with opened, engine.begin() as held:
        await _require_schema(app)
        # One scheduler at a time (held until this one has queued its jobs): two at once would
        # otherwise both see no open round and begin two.
        await held.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULER_LOCK})
        # Nor beside an in-process run of the same fleet (its round lock, held for its round): the
        # run would log in to the accounts queued here. Held until the jobs are committed, so a run
        # starting meanwhile waits, then finds them and refuses.
        if not (await held.execute(sa.select(sa.func.pg_try_advisory_xact_lock(RUN_LOCK)))).scalar_one():
            summary.run_busy = True
            return summary
        plan = await store.begin_round(
            engine, all_accounts=all_accounts, now=time.time() if now is None else now
        )
        if plan is None:
            return summary
        summary.round_id, summary.resumed, summary.planned = plan.round_id, plan.resumed, plan.planned
        task = app.tasks[TASK]

        def configured(lock_name: str, payload: str) -> procrastinate.jobs.JobDeferrer:
            return task.configure(lock=mailbox_lock(payload), queueing_lock=lock_name)

        for start in range(0, len(plan.remaining), 1000):
            ids = plan.remaining[start : start + 1000]
            locks = {queueing_lock(plan.round_id, i): i for i in ids}
            async with engine.connect() as conn:
                payloads = {
                    row.id: row.payload
                    for row in await conn.execute(
                        sa.select(accounts.c.id, accounts.c.payload).where(accounts.c.id.in_(ids))
                    )
                }
                busy = {
                    row[0]
                    for row in await conn.execute(
                        sa.text(
                            "SELECT queueing_lock FROM procrastinate_jobs"
                            " WHERE queueing_lock = ANY(:locks) AND status IN ('todo', 'doing')"
                        ),
                        {"locks": list(locks)},
                    )
                }
            summary.already += len(busy)
            jobs = [
                configured(lock_name, payloads[account_id]).make_new_job(
                    account_id=account_id, round_id=plan.round_id
                )
                for lock_name, account_id in locks.items()
                if lock_name not in busy and account_id in payloads
            ]
            if not jobs:
                continue
            try:
                # One INSERT for the chunk (all or nothing), each job with its own locks.
                await app.job_manager.batch_defer_jobs_async(jobs)
            except exceptions.AlreadyEnqueued:
                # Another hand queued one of them since the look above (a second scheduler waits on
                # the advisory lock): nothing of the chunk went in; one by one, the counts exact.
                for job in jobs:
                    try:
                        await app.job_manager.defer_job_async(job)
                    except exceptions.AlreadyEnqueued:
                        summary.already += 1
                    else:
                        summary.queued += 1
            else:
                summary.queued += len(jobs)
    return summary


async def watch_schedule(
    engine: AsyncEngine,
    app: procrastinate.App,
    *,
    stop: asyncio.Event,
    every: float,
    on_schedule: Callable[[ScheduleSummary], None] | None = None,
    webhook_secret: bytes | None = None,
) -> int:
    """``fleet watch --queue``: :func:`schedule_round` every ``every`` seconds until ``stop`` is set;
    how many rounds it began. Any number may run: one schedules at a time (the advisory lock), the
    others find the round begun and its jobs queued. The database lost: a line on stderr, and the
    next turn tries again.

    With ``webhook_secret``, each turn also sweeps the webhook deliveries left pending
    (:func:`sweep`), beside the scheduling (a slow receiver never delays a round): a turn whose
    previous sweep still runs starts none."""
    begun = 0
    sweeping: asyncio.Future[None] | None = None
    with quiet_lost_database() as quiet:
        try:
            while not stop.is_set():
                if webhook_secret is not None and (sweeping is None or sweeping.done()):
                    sweeping = asyncio.ensure_future(sweep_once(engine, webhook_secret, clock=time.time))
                try:
                    summary = await schedule_round(engine, app)
                except Exception as exc:
                    if not lost_database(exc):
                        raise
                    # A pool that failed to open stays half open: closed, the next turn opens a new one.
                    with contextlib.suppress(Exception):
                        await app.close_async()
                    why = shown(quiet.last_error or reason(exc))
                    quiet.last_error = None
                    log.warning(
                        "the queue's database is unreachable (%s): trying again in %.0f s", why, every
                    )
                else:
                    if summary.round_id is not None and not summary.resumed:
                        begun += 1
                    if on_schedule is not None:
                        on_schedule(summary)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=every)
        finally:
            if sweeping is not None:
                sweeping.cancel()
                await asyncio.gather(sweeping, return_exceptions=True)
    return begun


async def check_account(context: JobContext, *, account_id: int, round_id: int) -> str:
    """The queue's task: check one account of one round and record its report (once)."""
    state: WorkerState = (context.additional_context or {})["fleet"]
    return await check_one(state, account_id=account_id, round_id=round_id, job_id=context.job.id)


async def _close_round_if_last(state: WorkerState, round_id: int, job_id: int | None) -> None:
    """Close the round if every account of it has its report. Asked only once no job of the round
    waits (a cheap question to the queue): then the jobs still running each ask after their own
    report is committed, and the last of them closes the round. A round whose last job failed is
    closed by the jobs of the next ``schedule``."""
    if job_id is not None:
        async with state.engine.connect() as conn:
            waiting = (
                await conn.execute(
                    sa.text(
                        "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo'"
                        " AND queueing_lock LIKE :prefix AND id <> :job LIMIT 1"
                    ),
                    {"prefix": f"round:{round_id}:%", "job": job_id},
                )
            ).first()
        if waiting is not None:
            return
    await store.finish_round(state.engine, round_id, now=state.clock())


async def check_one(state: WorkerState, *, account_id: int, round_id: int, job_id: int | None = None) -> str:
    """What the job did: the verdict recorded, ``recorded before`` or ``gone``."""
    from inboxcheck._batch import run_batch
    from inboxcheck.fleet.oauth import FleetOAuth, batch_items
    from inboxcheck.fleet.run import _plain_scrubber

    engine = state.engine
    async with engine.connect() as conn:
        done = (
            await conn.execute(
                sa.select(reports.c.id).where(
                    reports.c.account_id == account_id, reports.c.round_id == round_id
                )
            )
        ).first()
    if done is not None:
        # The job ran before and its report was committed (the worker then died or was stopped).
        await _close_round_if_last(state, round_id, job_id)
        return "recorded before"
    refresh: dict[int, FleetOAuth] = {}
    loaded = await store.load_accounts(engine, [account_id], key=state.key, refresh=refresh)
    if not loaded:
        return "gone"
    [(_, account)] = loaded
    outcome: list[str] = []

    async def record(line: BatchLine) -> None:
        assert line.report is not None
        recorded = await store.record_report(
            engine,
            account_id=account_id,
            round_id=round_id,
            report=line.report,
            scrub=_plain_scrubber(account, refresh.get(account_id)),
            now=state.clock(),
            draw=state.rng.random(),
        )
        outcome.append(str(line.verdict) if recorded is not None else "recorded before")
        if recorded is not None and recorded.deliveries and state.webhook_secret is not None:
            await _deliver(state, recorded.deliveries)

    await run_batch(
        batch_items(engine, loaded, refresh, key=state.key, timeout=state.options.timeout, clock=state.clock),
        options=state.options,
        concurrency=1,
        per_host=1,
        presets=state.presets,
        ssl_context=state.ssl_context,
        record=record,
        gate=state.pace.hold if state.pace is not None else None,
    )
    await _close_round_if_last(state, round_id, job_id)
    return outcome[0] if outcome else "not checked"


async def _deliver(state: WorkerState, only: Sequence[int]) -> None:
    assert state.webhook_secret is not None
    await send_pending(state.engine, state.webhook_secret, clock=state.clock, only=only)


async def _sweep_every(state: WorkerState, *, every: float) -> None:
    """A worker's sweeps (:func:`sweep`), from its start and every ``every`` seconds."""
    assert state.webhook_secret is not None
    while True:
        await sweep_once(state.engine, state.webhook_secret, clock=state.clock)
        await asyncio.sleep(every)


async def _recover_stalled(app: procrastinate.App, *, stalled_after: float) -> None:
    """Put back on the queue the running jobs of workers whose heartbeat stopped (killed, cut off)."""
    every = max(stalled_after / 3, 0.5)
    while True:
        await asyncio.sleep(every)
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                queue=QUEUE, seconds_since_heartbeat=stalled_after
            )
            for job in stalled:
                with contextlib.suppress(Exception):
                    # Another worker may have retried it first: then it is no longer running here.
                    await app.job_manager.retry_job(job)
                    log.warning("job %s of a stalled worker put back on the queue", job.id)
        except Exception as exc:  # noqa: BLE001 - the database is away: try again at the next turn
            if not lost_database(exc):
                log.warning("stalled jobs not checked: %s", type(exc).__name__)


async def _serve(
    app: procrastinate.App,
    state: WorkerState,
    *,
    stalled_after: float,
    sweep_every: float,
    again: bool,
    **worker: Any,
) -> None:
    """One life of the worker on one pool of connections: until stopped, or the database lost."""
    async with app.open_async():
        await _require_schema(app)
        if again:
            log.warning("connected to the queue's database again; taking jobs")
        background = [asyncio.ensure_future(_recover_stalled(app, stalled_after=stalled_after))]
        if state.webhook_secret is not None:
            background.append(asyncio.ensure_future(_sweep_every(state, every=sweep_every)))
        try:
            await app.run_worker_async(
                additional_context={"fleet": state},
                update_heartbeat_interval=max(stalled_after / 4, 0.25),
                stalled_worker_timeout=stalled_after,
                install_signal_handlers=False,
                **worker,
            )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)


async def run_worker(
    app: procrastinate.App,
    state: WorkerState,
    *,
    concurrency: int = 10,
    stalled_after: float = STALLED_AFTER,
    graceful: float = GRACEFUL,
    name: str | None = None,
    schedule: bool = False,
    reconnect: tuple[float, float] = RECONNECT,
    sweep_every: float = SWEEP_EVERY,
    stop: asyncio.Event | None = None,
) -> None:
    """Take and run the fleet's jobs until ``stop`` is set (the command: on SIGTERM or SIGINT) or
    this is cancelled; then finish or put back the running ones.

    ``schedule``: also run the periodic scheduler (an app made with ``schedule_every``).
    With the webhook secret (``state.webhook_secret``), the worker also sweeps the webhook
    deliveries left pending (:func:`sweep`) at its start and every ``sweep_every`` seconds.

    The database lost (restarted, shut down, cut off): Procrastinate's worker stops taking jobs and
    lets its running checks end (a report whose write failed is retried as a job, which finds the
    report if it was committed after all); this worker then opens the queue again after
    ``reconnect[0]`` seconds, doubling up to ``reconnect[1]``, with one line on stderr each time.
    The running jobs it could not put back are given to a worker by the stalled-job recovery.
    ``stop`` ends it at any moment, the database up or not."""
    async with state.engine.connect() as conn:
        # A worker with the wrong key would fail every job it takes: refused before it takes one.
        await store.refuse_other_keys(conn, state.key)
    worker: dict[str, Any] = {
        "queues": [QUEUE, SCHEDULE_QUEUE] if schedule else [QUEUE],
        "name": name or "worker",
        "concurrency": concurrency,
        "shutdown_graceful_timeout": graceful,
    }
    stop = stop or asyncio.Event()
    delay = reconnect[0]
    again = False
    with quiet_lost_database() as quiet:
        while not stop.is_set():
            began = time.monotonic()
            life = asyncio.ensure_future(
                _serve(
                    app, state, stalled_after=stalled_after, sweep_every=sweep_every, again=again, **worker
                )
            )
            again = True
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({life, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not life.done():
                    # Stopped (or this call cancelled): Procrastinate's worker, cancelled, lets its
                    # running jobs finish for `graceful` seconds and puts the others back.
                    life.cancel()
                    await asyncio.gather(life, return_exceptions=True)
            error = None if life.cancelled() else life.exception()
            if error is not None and not lost_database(error):
                raise error
            if stop.is_set():
                break
            # The worker ended by itself: its database connection failed (Procrastinate stops a
            # worker whose heartbeat or listener lost the server). A pool left half open goes.
            with contextlib.suppress(Exception):
                await app.close_async()
            if time.monotonic() - began > 60:
                # It had worked a while: this is a new outage, not the same one going on.
                delay = reconnect[0]
            why = shown(quiet.last_error or (reason(error) if error is not None else "its connection failed"))
            quiet.last_error = None
            log.warning("the queue's database is unreachable (%s): connecting again in %.0f s", why, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, reconnect[1])


async def job_counts(engine: AsyncEngine) -> dict[str, Any]:
    """Per round: jobs waiting, running, done; and the workers seen in the last minute."""
    counts = await store.job_counts(engine)
    if counts is None:
        raise QueueError("the fleet database has no queue yet: run `inboxcheck fleet migrate-queue`")
    return counts
