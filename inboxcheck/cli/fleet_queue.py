"""``inboxcheck fleet migrate-queue | schedule | worker | queue``: the fleet's checks as jobs on a
Procrastinate queue in the fleet's PostgreSQL database, run by as many workers as you start.

Procrastinate is imported inside the commands (the `queue` extra): ``inboxcheck --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from inboxcheck.cli._fleet_common import _db_option, _key, _key_option, _pace_option, _with_store
from inboxcheck.cli._options import (
    check_options as _check_options,
    option as _option,
    options_from as _options_from,
)
from inboxcheck.cli._terminal import notice as _notice, stop_on_signals as _stop_on_signals

if TYPE_CHECKING:
    import procrastinate
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck.fleet.pace import PaceRule

_T = TypeVar("_T")


def _queue_db(db: str | None) -> str:
    """The fleet database URL for the queue: given, else INBOXCHECK_FLEET_DB; PostgreSQL only."""
    from inboxcheck._errors import InboxcheckError

    url = db or os.environ.get("INBOXCHECK_FLEET_DB")
    if not url:
        raise InboxcheckError(
            "the queue needs a PostgreSQL fleet: give --db postgresql://USER@HOST/NAME "
            "(or set INBOXCHECK_FLEET_DB)"
        )
    try:
        from inboxcheck.fleet.queue import conninfo
    except ImportError as exc:
        raise InboxcheckError(
            f"the queue needs the `queue` extra ({exc.name or 'a module'} is missing): "
            "pip install 'inboxcheck[queue]'"
        ) from None
    conninfo(url)
    return url


def _with_queue(
    db: str | None,
    work: Callable[[AsyncEngine, procrastinate.App], Awaitable[_T]],
    *,
    schedule_every: int | None = None,
) -> _T:
    from inboxcheck.fleet.queue import make_app

    url = _queue_db(db)
    app = make_app(url, schedule_every=schedule_every)

    async def go(engine: AsyncEngine) -> _T:
        from psycopg import Error as PsycopgError

        from inboxcheck.fleet._db import FleetDbError, shown

        try:
            return await work(engine, app)
        except PsycopgError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FleetDbError(f"the fleet database {shown(url)} failed: {first}") from None

    return _with_store(url, go)


def register(fleet: click.Group) -> None:
    """Add the queue's commands to the ``fleet`` group."""
    for command in (migrate_queue, schedule, worker, queue_status):
        fleet.add_command(command)


@click.command("migrate-queue")
@_db_option
def migrate_queue(db: str | None) -> None:
    """Create the job queue's tables (Procrastinate's schema) in a PostgreSQL fleet database.

    Run once, after `inboxcheck fleet migrate`, before the first `fleet schedule` or `fleet worker`.
    """
    from inboxcheck.fleet.queue import apply_schema

    async def work(_engine: AsyncEngine, app: procrastinate.App) -> bool:
        return await apply_schema(app)

    created = _with_queue(db, work)
    _notice("queue schema created" if created else "queue schema already there")


@click.command()
@click.option("--all", "all_accounts", is_flag=True, help="Queue every account, not only those due.")
@_db_option
@_option("format", help="Output format on stdout.")
def schedule(all_accounts: bool, db: str | None, fmt: str) -> None:
    """Begin a round of the due accounts (or take the unfinished one) and queue one job per account.

    Returns at once; workers (`inboxcheck fleet worker`) check the accounts. Run it again: an
    account already queued or running in the round is not queued twice. A job holds the account's
    id and the round's id only; no key is needed here.
    """
    from inboxcheck.fleet.queue import schedule_round

    async def work(engine: AsyncEngine, app: procrastinate.App) -> Any:
        return await schedule_round(engine, app, all_accounts=all_accounts)

    summary = _with_queue(db, work)
    if fmt == "json":
        click.echo(json.dumps(summary.__dict__))
    else:
        _notice(summary.describe())


@click.command()
@_db_option
@_key_option
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Accounts this worker checks at once.",
)
@click.option(
    "--stalled-after",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds without a worker's heartbeat before its running jobs are given to another worker.",
)
@click.option(
    "--graceful",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="On SIGTERM: seconds to let running checks finish before they are stopped and re-queued.",
)
@click.option(
    "--schedule",
    is_flag=True,
    help="Also queue the due accounts periodically (one scheduler runs at a time, whatever the "
    "number of workers started with --schedule).",
)
@click.option(
    "--schedule-every",
    type=click.IntRange(1, 3600),
    default=60,
    show_default=True,
    help="With --schedule: seconds between two looks for due accounts.",
)
@click.option("--name", help="This worker's name, as the queue shows it.")
@_pace_option
@_check_options
def worker(
    db: str | None,
    key_file: Path | None,
    concurrency: int,
    stalled_after: float,
    graceful: float,
    schedule: bool,
    schedule_every: int,
    name: str | None,
    pace_rules: tuple[PaceRule, ...],
    pace_group: str | None,
    fmt: str,
    verbose: bool,
    quiet: bool,
    **params: Any,
) -> None:
    """Take the fleet's jobs from the queue and check each account, until SIGTERM or SIGINT.

    Run as many as you like, on as many machines as reach the database. Each decrypts its accounts
    with the fleet's key (INBOXCHECK_FLEET_KEY or --key-file). SIGTERM: no new job is taken,
    running checks get --graceful seconds, the rest go back on the queue; exit 0. The database
    restarted or lost: the worker stays up, says so on stderr, and connects again.

    Logins per provider (the presets' limits, and --pace) are counted in the fleet's database:
    the limits hold for all workers together (of one --pace-group), not for each.
    """
    import asyncio

    from inboxcheck._check import make_ssl_context
    from inboxcheck._presets import load_presets
    from inboxcheck.fleet.pace import SharedPace
    from inboxcheck.fleet.queue import WorkerState, run_worker

    fleet_key = _key(key_file)
    options = _options_from(params)
    secret = os.environ.get("INBOXCHECK_WEBHOOK_SECRET")
    presets = load_presets()

    async def work(engine: AsyncEngine, app: procrastinate.App) -> None:
        pace = SharedPace(engine, presets, pace_rules, group=pace_group)
        stop = asyncio.Event()
        state = WorkerState(
            engine=engine,
            key=fleet_key,
            options=options,
            presets=presets,
            webhook_secret=secret.encode() if secret else None,
            ssl_context=make_ssl_context(options),
            pace=pace,
        )
        try:
            with _stop_on_signals(stop):
                await run_worker(
                    app,
                    state,
                    concurrency=concurrency,
                    stalled_after=stalled_after,
                    graceful=graceful,
                    name=name,
                    schedule=schedule,
                    stop=stop,
                )
        finally:
            await pace.aclose()

    if not quiet:
        _notice(f"worker started (pid {os.getpid()}, {concurrency} at once); SIGTERM stops it")
    _with_queue(db, work, schedule_every=schedule_every if schedule else None)
    if not quiet:
        _notice("worker stopped")
    sys.exit(0)


@click.command("queue")
@_db_option
@_option("format", help="Output format on stdout.")
def queue_status(db: str | None, fmt: str) -> None:
    """Jobs per round on the queue (waiting, running, done, failed) and workers seen in the last minute."""
    from inboxcheck.fleet.queue import job_counts

    async def work(engine: AsyncEngine, _app: procrastinate.App) -> dict[str, Any]:
        return await job_counts(engine)

    counts = _with_queue(db, work)
    if fmt == "json":
        click.echo(json.dumps(counts))
        return
    from inboxcheck.cli.fleet_reports import queue_lines

    click.echo("\n".join(queue_lines(counts)))


def watch_queue(db: str | None, *, every: float, fmt: str, quiet: bool) -> None:
    """``fleet watch --queue``: queue the due accounts every ``every`` seconds until SIGTERM or
    Ctrl-C (exit 0), as ``fleet schedule`` does once."""
    import asyncio

    from inboxcheck.fleet.queue import ScheduleSummary, watch_schedule

    def on_schedule(summary: ScheduleSummary) -> None:
        if fmt == "json":
            click.echo(json.dumps(summary.__dict__))
        elif not quiet and summary.queued:
            _notice(summary.describe())

    async def work(engine: AsyncEngine, app: procrastinate.App) -> int:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            return await watch_schedule(engine, app, stop=stop, every=every, on_schedule=on_schedule)

    if not quiet:
        _notice(f"queueing the due accounts every {every:g} s; stop with Ctrl-C or SIGTERM")
    begun = _with_queue(db, work)
    if not quiet:
        _notice(f"stopped after {begun} round(s) begun")
