"""``inboxcheck fleet status|history|changes|diagnose``: reading the fleet's reports (registered on
the ``fleet`` group in :mod:`inboxcheck.cli.fleet`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from inboxcheck.cli._fleet_common import _db_option, _json_out, _key, _key_option, _mark, _moment, _with_store
from inboxcheck.cli._options import (
    check_options as _check_options,
    option as _option,
    options_from as _options_from,
)
from inboxcheck.cli._terminal import colour_wanted as _colour_wanted, unicode_ok as _unicode_ok

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


@click.command()
@_db_option
@_option("format", help="Output format on stdout.")
def status(db: str | None, fmt: str) -> None:
    """One line per account: its verdict now, since when, last checked, the top cause.

    A fleet on the job queue also shows its jobs per round (queued, running, done) and the workers
    seen in the last minute, as `fleet queue` does.
    """
    from inboxcheck.cli._terminal import escape
    from inboxcheck.fleet import store

    async def both(engine: AsyncEngine) -> tuple[str, dict[str, Any] | None]:
        return await store.status_document(engine), await store.job_counts(engine)

    document, queue = _with_store(db, both)
    if fmt == "json":
        if queue is not None:
            # {"accounts": [...]} from the store, with the queue beside the accounts.
            document = document[:-1] + ',"queue":' + json.dumps(queue, separators=(",", ":")) + "}"
        click.echo(document)
        return
    rows = json.loads(document)["accounts"]
    lines = []
    for row in rows:
        cause = row["cause"]
        tail = f"  {cause['code']}: {cause['message']}" if cause else ""
        lines.append(
            f"{_mark(row['verdict'])} {escape(row['email_address'])} {row['verdict']} since "
            f"{row['since'] or '-'}, checked {row['checked_at'] or 'never'}{escape(tail)}"
        )
    if queue is not None:
        lines.extend(queue_lines(queue))
    if lines:
        click.echo("\n".join(lines))


def queue_lines(counts: dict[str, Any]) -> list[str]:
    """The queue's jobs per round and its workers, a line each (`fleet queue`, `fleet status`)."""
    lines = [f"workers seen in the last minute: {counts['workers']}"]
    names = {"todo": "queued", "doing": "running", "succeeded": "done"}
    for round_id, statuses in sorted(counts["rounds"].items()):
        parts = ", ".join(f"{n} {names.get(s, s)}" for s, n in sorted(statuses.items()))
        lines.append(f"round {round_id}: {parts}")
    return lines


@click.command()
@click.argument("address")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@_db_option
@_option("format", help="Output format on stdout.")
def history(address: str, limit: int, db: str | None, fmt: str) -> None:
    """ADDRESS's reports over time, newest first: verdict, state, codes."""
    from inboxcheck.cli._terminal import escape
    from inboxcheck.fleet import store

    if fmt == "json":
        _json_out(_with_store(db, lambda engine: store.history_document(engine, address, limit=limit)))
        return
    rows = _with_store(db, lambda engine: store.history(engine, address, limit=limit))
    for row in rows:
        codes = ", ".join(row["codes"])
        click.echo(
            f"{row['checked_at']} {row['verdict']} ({row['state']}){escape(': ' + codes) if codes else ''}"
        )


def _change_text(change: dict[str, Any]) -> str:
    from inboxcheck.cli._terminal import escape

    lines = [f"{change['at']} {escape(change['email_address'])}: {change['from']} -> {change['to']}"]
    if change["appeared"]:
        lines.append(f"  appeared: {escape(', '.join(change['appeared']))}")
    if change["disappeared"]:
        lines.append(f"  disappeared: {escape(', '.join(change['disappeared']))}")
    for item in change["evidence"]:
        before = json.dumps(item["before"], ensure_ascii=False)
        after = json.dumps(item["after"], ensure_ascii=False)
        lines.append(f"  {escape(item['what'])}: {escape(before)} -> {escape(after)}")
    return "\n".join(lines)


@click.command()
@click.option("--since", metavar="TIME", help="Only changes since TIME (ISO 8601, or a span back: 24h, 7d).")
@click.option("--address", metavar="ADDRESS", help="Only this account's changes.")
@_db_option
@_option("format", help="Output format on stdout.")
def changes(since: str | None, address: str | None, db: str | None, fmt: str) -> None:
    """Every change of verdict, with what changed: findings that appeared and went, and evidence
    before and after (the server's reply, the certificate, TLS version, MX, SPF/DMARC/DKIM records)."""
    from inboxcheck.fleet import store

    start = _moment(since, now=time.time()) if since else None
    if fmt == "json":
        _json_out(
            _with_store(db, lambda engine: store.changes_document(engine, since=start, address=address))
        )
        return
    rows = _with_store(db, lambda engine: store.change_list(engine, since=start, address=address))
    for row in rows:
        click.echo(_change_text(row))


@click.command("diagnose")
@click.argument("address")
@_db_option
@_key_option
@_check_options
@click.option("--no-alternates", is_flag=True, help="Do not try the provider's other hosts and ports.")
def diagnose_command(
    address: str,
    db: str | None,
    key_file: Path | None,
    no_alternates: bool,
    fmt: str,
    verbose: bool,
    quiet: bool,
    **params: Any,
) -> None:
    """Troubleshoot ADDRESS from the fleet: the ranked causes, and what changed since its last
    passing report (the same as `inboxcheck diagnose --fleet ADDRESS`)."""
    diagnose_from_fleet(
        address,
        db=db,
        key_file=key_file,
        no_alternates=no_alternates,
        fmt=fmt,
        verbose=verbose,
        quiet=quiet,
        params=params,
    )


def diagnose_from_fleet(
    address: str,
    *,
    db: str | None,
    key_file: Path | None,
    no_alternates: bool,
    fmt: str,
    verbose: bool,
    quiet: bool,
    params: dict[str, Any],
) -> NoReturn:
    """Diagnose a fleet account (``fleet diagnose ADDRESS`` and ``diagnose --fleet ADDRESS``): its
    payload and passwords from the store under the fleet key, the last passing report as the
    previous one, and what changed since; exits with the diagnosis's code."""
    from inboxcheck._diagnose import diagnose
    from inboxcheck._models import Report
    from inboxcheck.cli._oauth import oauth_given, oauth_params
    from inboxcheck.cli._terminal import Terminal
    from inboxcheck.cli.diagnose import DiagnosisOutput, render_diagnosis
    from inboxcheck.fleet import store
    from inboxcheck.fleet.changes import diff_reports

    if oauth_given(oauth_params(params)):
        raise click.UsageError(
            "a fleet account logs in with what the fleet stores (passwords, or an OAuth2 refresh): the "
            "--oauth-* options do not apply"
        )
    fleet_key = _key(key_file)
    options = _options_from(params)

    async def work(engine: AsyncEngine) -> tuple[Any, dict[str, Any] | None]:
        import time

        import sqlalchemy as sa

        from inboxcheck._models import CheckResult
        from inboxcheck.fleet._schema import accounts
        from inboxcheck.fleet.oauth import FleetOAuth, preparer

        async with engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(accounts.c.id).where(accounts.c.address == address.strip().lower())
                )
            ).scalar_one_or_none()
        if found is None:
            raise store.UnknownAccountError(address)
        refresh: dict[int, FleetOAuth] = {}
        [(_, account)] = await store.load_accounts(engine, [int(found)], key=fleet_key, refresh=refresh)
        leading: tuple[CheckResult, ...] = ()
        if int(found) in refresh:
            # An OAuth2 account: a fresh access token first, as `fleet run` gets (and a rotated
            # refresh token stored).
            prepare = preparer(
                engine,
                key=fleet_key,
                account_id=int(found),
                oauth=refresh[int(found)],
                timeout=options.timeout,
                clock=time.time,
            )
            account, leading = await prepare(account)
        previous = await store.last_passing_report(engine, address)
        earlier = Report.model_validate(previous) if previous is not None else None
        result = await diagnose(
            account, options=options, previous=earlier, try_alternates=not no_alternates, leading=leading
        )
        return result, previous

    result, previous = _with_store(db, work)
    report = json.loads(result.report.model_dump_json())
    since = diff_reports(previous, report).as_json() if previous is not None else None
    if fmt == "json":
        data = json.loads(result.model_dump_json())
        data["since_last_pass"] = since
        _json_out(data)
    elif quiet:
        click.echo(
            DiagnosisOutput().text(result, Terminal.of(sys.stdout), verbose=False, quiet=True), nl=False
        )
    else:
        out = sys.stdout
        click.echo(
            render_diagnosis(
                result, colour=_colour_wanted(out), unicode=_unicode_ok(out), verbose=verbose, width=None
            ),
            nl=False,
        )
        if since is None:
            click.echo("No passing report of this account is stored: nothing to compare with.")
        else:
            change = {
                "at": previous.get("generated_at", "?") if previous else "?",
                "email_address": address,
                "from": "last pass",
                "to": "now",
                **since,
            }
            click.echo("What changed since the last passing report:")
            click.echo(_change_text(change))
    sys.exit(result.exit_code)
