"""``inboxcheck fleet``: watch a fleet of inboxes (the store, scheduled re-checks, changes, webhooks).

Everything heavy (SQLAlchemy, the checks) is imported inside the commands: ``inboxcheck --help``
stays fast.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inboxcheck.cli._fleet_common import (
    _T as _T,
    _db_option as _db_option,
    _Fn as _Fn,
    _json_out as _json_out,
    _key as _key,
    _key_option as _key_option,
    _mark as _mark,
    _moment as _moment,
    _pace_group_needs_postgresql as _pace_group_needs_postgresql,
    _pace_option as _pace_option,
    _span as _span,
    _with_store as _with_store,
)
from inboxcheck.cli._options import (
    check_options as _check_options,
    option as _option,
    options_from as _options_from,
)
from inboxcheck.cli._terminal import (
    Progress as _Progress,
    notice as _notice,
)
from inboxcheck.cli.fleet_reports import changes, diagnose_command, history, status

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck._batch import BatchLine
    from inboxcheck.fleet.pace import PaceRule


@click.group()
def fleet() -> None:
    """Watch a fleet of inboxes: re-check them on a schedule, keep every report, say what changed.

    Passwords are stored encrypted (AES-256-GCM) under the key in INBOXCHECK_FLEET_KEY or
    --key-file; make one with `inboxcheck fleet key new`.
    """


# Reading the reports (status, history, changes, diagnose): inboxcheck/cli/fleet_reports.py.
for _command in (status, history, changes, diagnose_command):
    fleet.add_command(_command)


@fleet.command()
@_db_option
def migrate(db: str | None) -> None:
    """Create the fleet's tables, or bring them to this version's schema."""
    from inboxcheck.fleet._db import migrate as run_migrate

    before, after = _with_store(db, run_migrate, migrate=False)
    _notice(f"schema {'created' if before is None else 'at ' + str(before)}; now at {after}")


@fleet.group()
def key() -> None:
    """The fleet's encryption key."""


@key.command("new")
def key_new() -> None:
    """Print a new random key (base64 of 32 bytes): keep it in INBOXCHECK_FLEET_KEY or a key file."""
    from inboxcheck.fleet._crypto import new_key_text

    click.echo(new_key_text())


@fleet.command()
@_db_option
@_key_option
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The key to encrypt every password under from now on.",
)
def rekey(db: str | None, key_file: Path | None, new_key_file: Path) -> None:
    """Re-encrypt every stored password under a new key, in one transaction."""
    from inboxcheck.fleet import store
    from inboxcheck.fleet._crypto import key_from_file

    old, new = _key(key_file), key_from_file(new_key_file)
    count = _with_store(db, lambda engine: store.rekey(engine, old=old, new=new, now=time.time()))
    _notice(f"{count} account(s) re-encrypted under key {new.id}")


@fleet.command()
@click.argument("source", metavar="FILE|-", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--interval", default="24h", show_default=True, help="How often to check these accounts (30m, 24h, 7d)."
)
@_db_option
@_key_option
def add(source: Path, interval: str, db: str | None, key_file: Path | None) -> None:
    """Add accounts (JSON, JSONL or CSV like check --batch; - for stdin), or update them by address.

    Passwords left out of the file come from INBOXCHECK_SMTP_PASSWORD and INBOXCHECK_IMAP_PASSWORD.
    An inbox that logs in with OAuth2 has, in its JSONL line beside the payload's fields, an
    "oauth" object: provider (google, microsoft), client_id, refresh_token, and optionally
    client_secret_file, tenant, token_url; its passwords may be left out. The refresh token and the
    client secret are stored encrypted like passwords; every check gets a fresh access token.
    """
    from inboxcheck._batch import read_batch
    from inboxcheck.cli._terminal import escape, escape_lines
    from inboxcheck.fleet import store
    from inboxcheck.fleet.oauth import split_lines

    seconds = _span(interval, what="--interval")
    if seconds < 60:
        raise click.BadParameter("at least 60 seconds between checks", param_hint="--interval")
    fleet_key = _key(key_file)
    if source != Path("-") and not source.exists():
        raise click.BadParameter(f"{source}: no such file", param_hint="FILE")
    lines = split_lines(read_batch(source, oauth=True), discover="inboxcheck discover")
    good, refreshes = lines.accounts, lines.refreshes
    refused = [(item.line, problem) for item, problem in lines.refused]
    done = _with_store(
        db,
        lambda engine: store.add_accounts(
            engine, good, key=fleet_key, interval=seconds, now=time.time(), oauth=refreshes
        ),
    )
    for address in done.added:
        click.echo(f"added {escape(address)}")
    for address in done.updated:
        click.echo(f"updated {escape(address)}")
    for _line, problem in refused:
        click.echo(f"refused {escape_lines(problem)}")
    _notice(
        f"{len(done.added)} added, {len(done.updated)} updated, {len(done.unchanged)} unchanged, "
        f"{len(refused)} refused"
    )
    sys.exit(2 if refused else 0)


@fleet.command("list")
@_db_option
@_option("format", help="Output format on stdout.")
def list_(db: str | None, fmt: str) -> None:
    """Every account: its schedule, whether it is paused, its verdict, an OAuth2 login."""
    from inboxcheck.cli._terminal import escape
    from inboxcheck.fleet import store

    rows = _with_store(db, store.list_accounts)
    if fmt == "json":
        _json_out({"accounts": rows})
        return
    for row in rows:
        paused = " (paused)" if row["paused"] else ""
        login = f", {row['login']}" if row["login"] != "password" else ""
        click.echo(
            f"{_mark(row['verdict'])} {escape(row['email_address'])} {row['verdict']}{paused}  "
            f"every {_human(row['interval_s'])}, next {row['next_due']}{login}"
        )


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@fleet.command()
@click.argument("address")
@_db_option
def remove(address: str, db: str | None) -> None:
    """Remove ADDRESS and its history."""
    from inboxcheck.cli._terminal import escape
    from inboxcheck.fleet import store

    _with_store(db, lambda engine: store.remove_account(engine, address))
    _notice(f"removed {escape(address)}")


def _pause_command(name: str, paused: bool, text: str) -> None:
    @fleet.command(name, help=text)
    @click.argument("address")
    @_db_option
    def command(address: str, db: str | None) -> None:
        from inboxcheck.cli._terminal import escape
        from inboxcheck.fleet import store

        _with_store(db, lambda engine: store.set_paused(engine, address, paused, now=time.time()))
        _notice(f"{escape(address)} {'paused' if paused else 'resumed'}")


_pause_command("pause", True, "Stop checking ADDRESS until it is resumed.")
_pause_command("resume", False, "Check ADDRESS again (at the next run).")


def _run_options(function: _Fn) -> _Fn:
    for decorator in reversed(
        (
            _db_option,
            _key_option,
            _option("concurrency", help="Accounts checked at once."),
            _option("per-host", help="Accounts checked at once against one server host."),
            _pace_option,
            click.option(
                "--webhook",
                "webhooks",
                multiple=True,
                metavar="URL",
                help="Also POST each change of verdict here (repeatable; signed with "
                "INBOXCHECK_WEBHOOK_SECRET).",
            ),
        )
    ):
        function = decorator(function)
    return _check_options(function)


def _run_kwargs(params: dict[str, Any], webhooks: tuple[str, ...], *, needs_secret: bool) -> dict[str, Any]:
    from inboxcheck.fleet.webhooks import webhook_secret

    options = _options_from(params)
    secret = webhook_secret() if (webhooks or needs_secret) else None
    return {"options": options, "webhook_urls": webhooks, "webhook_secret": secret}


def _printer(fmt: str, quiet: bool, progress: _Progress | None) -> Callable[[BatchLine], None]:
    from inboxcheck.cli._terminal import escape

    live = progress is not None and sys.stderr.isatty()

    def on_result(line: BatchLine) -> None:
        if progress is not None:
            progress.done += 1
        if fmt == "json":
            click.echo(line.model_dump_json())
        elif not quiet:
            codes = (
                sorted({f.code for f in line.report.findings() if f.severity.value in ("fail", "error")})
                if line.report is not None
                else []
            )
            if live:
                click.echo("\r\x1b[K", nl=False, err=True)
            detail = f": {escape(', '.join(codes))}" if codes else ""
            click.echo(f"{escape(line.email_address or '-')} {line.verdict}{detail}")
        if live and progress is not None:
            click.echo(f"\r[{progress.describe()}]\x1b[K", nl=False, err=True)

    return on_result


def _waiting(quiet: bool) -> Callable[[int | None], None]:
    """What a run says while another run of the same fleet has a round (it waits for it)."""

    def on_wait(pid: int | None) -> None:
        if not quiet:
            who = f" (pid {pid})" if pid is not None else ""
            _notice(f"another fleet run{who} is checking this fleet; waiting for it to finish its round")

    return on_wait


async def _stored_webhooks(engine: AsyncEngine) -> bool:
    from inboxcheck.fleet import store

    return bool(await store.list_webhooks(engine))


@fleet.command()
@click.option("--all", "all_accounts", is_flag=True, help="Check every account, not only those due.")
@_run_options
def run(
    all_accounts: bool,
    db: str | None,
    key_file: Path | None,
    concurrency: int,
    per_host: int,
    pace_rules: tuple[PaceRule, ...],
    pace_group: str | None,
    webhooks: tuple[str, ...],
    fmt: str,
    verbose: bool,
    quiet: bool,
    **params: Any,
) -> None:
    """Check every account that is due (--all: every account) and record each report.

    Interrupted and run again, it finishes the same round: one report per account per round.
    While another run or watch is checking the same fleet, it waits for that round to end, then
    checks what is due by then.
    """
    from inboxcheck.fleet.run import run_fleet

    fleet_key = _key(key_file)
    progress = _Progress(None, clock=time.monotonic) if not quiet and fmt == "text" else None

    def on_plan(count: int) -> None:
        if progress is not None:
            progress.total = count
            progress.start(0)

    async def work(engine: AsyncEngine) -> Any:
        _pace_group_needs_postgresql(engine, pace_group)
        kwargs = _run_kwargs(params, webhooks, needs_secret=await _stored_webhooks(engine))
        return await run_fleet(
            engine,
            key=fleet_key,
            all_accounts=all_accounts,
            concurrency=concurrency,
            per_host=per_host,
            pace_rules=pace_rules,
            pace_group=pace_group,
            on_plan=on_plan,
            on_result=_printer(fmt, quiet, progress),
            on_wait=_waiting(quiet),
            **kwargs,
        )

    summary = _with_store(db, work)
    if progress is not None and sys.stderr.isatty():
        click.echo("\r\x1b[K", nl=False, err=True)
    if not quiet:
        for line in summary.describe().splitlines():
            _notice(line)
    sys.exit(summary.exit_code)


@fleet.command()
@click.option(
    "--queue",
    "use_queue",
    is_flag=True,
    help="Check nothing here: put the due accounts on the job queue of a PostgreSQL fleet, as "
    "`fleet schedule` does, every --every seconds; `fleet worker` processes check them. Several "
    "may run (one schedules at a time). No key needed. With INBOXCHECK_WEBHOOK_SECRET, also "
    "sends the webhook deliveries left pending.",
)
@click.option(
    "--every",
    type=click.FloatRange(1, 86400),
    help="With --queue: seconds between two looks for due accounts [default: 60].",
)
@_run_options
def watch(
    use_queue: bool,
    every: float | None,
    db: str | None,
    key_file: Path | None,
    concurrency: int,
    per_host: int,
    pace_rules: tuple[PaceRule, ...],
    pace_group: str | None,
    webhooks: tuple[str, ...],
    fmt: str,
    verbose: bool,
    quiet: bool,
    **params: Any,
) -> None:
    """Run the due accounts as they fall due, until SIGTERM or SIGINT (a clean stop within seconds).

    Other runs and watches of the same fleet may run beside it: one round at a time, each account
    checked once in it.

    With --queue, queue them for the workers instead (`inboxcheck fleet worker`).
    """
    if use_queue:
        if webhooks:
            raise click.UsageError(
                "--webhook: with --queue the workers deliver the webhooks; add it with "
                "`inboxcheck fleet webhook add URL`"
            )
        from inboxcheck.cli.fleet_queue import watch_queue

        watch_queue(db, every=60.0 if every is None else every, fmt=fmt, quiet=quiet)
        return
    if every is not None:
        raise click.UsageError("--every goes with --queue (without it, accounts run as they fall due)")
    import asyncio

    from inboxcheck.cli._terminal import stop_on_signals
    from inboxcheck.fleet.run import FleetRunSummary, watch_fleet

    fleet_key = _key(key_file)

    def on_round(summary: FleetRunSummary) -> None:
        if not quiet:
            for line in summary.describe().splitlines():
                _notice(line)

    async def work(engine: AsyncEngine) -> int:
        _pace_group_needs_postgresql(engine, pace_group)
        kwargs = _run_kwargs(params, webhooks, needs_secret=await _stored_webhooks(engine))
        stop = asyncio.Event()
        with stop_on_signals(stop):
            return await watch_fleet(
                engine,
                stop=stop,
                key=fleet_key,
                concurrency=concurrency,
                per_host=per_host,
                pace_rules=pace_rules,
                pace_group=pace_group,
                on_result=_printer(fmt, quiet, None),
                on_round=on_round,
                on_wait=_waiting(quiet),
                **kwargs,
            )

    if not quiet:
        _notice("watching the fleet; stop with Ctrl-C or SIGTERM")
    rounds = _with_store(db, work)
    if not quiet:
        _notice(f"stopped after {rounds} round(s)")


@fleet.command()
@click.option("--keep-days", type=click.FloatRange(min=0), required=True, help="Keep reports this recent.")
@_db_option
def prune(keep_days: float, db: str | None) -> None:
    """Delete older reports; every change, and the last report before and after it, stay.

    On a PostgreSQL fleet with the job queue, also the queue's finished jobs older than that
    (Procrastinate keeps every finished job until deleted: one per account per round).
    """
    from inboxcheck.fleet import store

    async def work(engine: AsyncEngine) -> tuple[int, int | None]:
        now = time.time()
        count = await store.prune(engine, keep_days=keep_days, now=now)
        return count, await store.prune_jobs(engine, keep_days=keep_days, now=now)

    count, jobs = _with_store(db, work)
    _notice(
        f"{count} report(s) deleted" + (f", {jobs} finished job(s) of the queue" if jobs is not None else "")
    )


@fleet.group()
def webhook() -> None:
    """The URLs each change of verdict is POSTed to (signed with INBOXCHECK_WEBHOOK_SECRET)."""


@webhook.command("add")
@click.argument("url")
@_db_option
def webhook_add(url: str, db: str | None) -> None:
    """POST each change of verdict to URL from now on."""
    from inboxcheck.fleet import store

    if not re.match(r"^https?://[^\s/]+", url):
        raise click.BadParameter(f"{url!r}: give an http:// or https:// URL", param_hint="URL")
    added = _with_store(db, lambda engine: store.add_webhook(engine, url, now=time.time()))
    _notice("webhook added" if added else "that webhook was already there")


@webhook.command("list")
@_db_option
def webhook_list(db: str | None) -> None:
    from inboxcheck.cli._terminal import escape
    from inboxcheck.fleet import store

    for url in _with_store(db, store.list_webhooks):
        click.echo(escape(url))


@webhook.command("remove")
@click.argument("url")
@_db_option
def webhook_remove(url: str, db: str | None) -> None:
    from inboxcheck.fleet import store

    if not _with_store(db, lambda engine: store.remove_webhook(engine, url)):
        _notice("no such webhook")
        sys.exit(2)


@webhook.command("log")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@_db_option
@_option("format", default="json", help="Output format on stdout: json is JSON lines.")
def webhook_log(limit: int, db: str | None, fmt: str) -> None:
    """The delivery log, newest first: a pending delivery with its next attempt and, while a
    sender holds it, who (host, pid) and until when."""
    from inboxcheck.fleet.webhooks import delivery_log

    for row in _with_store(db, lambda engine: delivery_log(engine, limit=limit)):
        click.echo(json.dumps(row, ensure_ascii=False) if fmt == "json" else _delivery_line(row))


def _delivery_line(row: dict[str, Any]) -> str:
    from inboxcheck.cli._terminal import escape

    done = f"{row['status']}, {row['attempts']} attempt(s)"
    if row["last_status"] is not None:
        done += f", last HTTP {row['last_status']}"
    elif row["last_error"]:
        done += f", last {escape(row['last_error'])}"
    if row["delivered_at"]:
        done += f", at {row['delivered_at']}"
    if row["next_attempt_at"]:
        done += f", next {row['next_attempt_at']}"
    if row["claimed_by"] is not None:
        held = "claim ran out" if row["claim_expired"] else "claimed"
        done += f"; {held} by {escape(row['claimed_by'])} until {row['claimed_until']}"
    return f"{row['event']} {escape(row['email_address'])} -> {escape(row['url'])}: {done}"


def _register_queue() -> None:
    # The queue's commands (issue 19) live in their own module; Procrastinate loads only when run.
    from inboxcheck.cli.fleet_queue import register

    register(fleet)


_register_queue()
