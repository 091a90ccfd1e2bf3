"""What the ``fleet`` commands share: the --db and --key-file options, the store opened and closed
around a command, durations and times read, the verdict marks."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from inboxcheck.cli._terminal import colour_wanted as _colour_wanted, run_async, unicode_ok as _unicode_ok

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck.fleet._crypto import FleetKey

_T = TypeVar("_T")
_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_MARKS: Final = {"pass": "✔", "warn": "!", "degraded": "~", "broken": "✘", "unknown": "?"}
_COLOURS: Final = {
    "pass": "green",
    "warn": "yellow",
    "degraded": "magenta",
    "broken": "red",
    "unknown": "white",
}


def _span(text: str, *, what: str) -> float:
    """Seconds from ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or a bare number of seconds."""
    match = _SPAN.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: give a duration such as 30m, 24h or 7d", param_hint=what)
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _moment(text: str, *, now: float) -> float:
    """A point in time: an ISO 8601 time (UTC unless it says), or a span back from now (``24h``)."""
    if _SPAN.match(text):
        return now - _span(text, what="--since")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give an ISO 8601 time (2026-01-31T08:00Z) or a span back from now (24h)",
            param_hint="--since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _db_option(function: _Fn) -> _Fn:
    return click.option(
        "--db",
        "db",
        envvar="INBOXCHECK_FLEET_DB",
        metavar="URL",
        help="The fleet's database: sqlite:///PATH or postgresql://USER@HOST/NAME "
        "[env INBOXCHECK_FLEET_DB; default: sqlite:///inboxcheck-fleet.db]",
    )(function)


def _pace_rules(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[Any, ...]:
    if not values:
        return ()
    from inboxcheck.fleet.pace import PaceRule

    try:
        return tuple(PaceRule.parse(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pace") from None


def _pace_group(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 100 or not value.isprintable() or value != value.strip():
        raise click.BadParameter(
            "a group is a printable name of at most 100 characters (no spaces at its ends)",
            param_hint="--pace-group",
        )
    return value


def _pace_group_needs_postgresql(engine: AsyncEngine, group: str | None) -> None:
    """A SQLite fleet is checked by one process at a time: a pace group would mean nothing there."""
    if group is not None and engine.dialect.name != "postgresql":
        raise click.UsageError(
            "--pace-group (or INBOXCHECK_PACE_GROUP) goes with a PostgreSQL fleet, whose processes "
            "share the pace; a SQLite fleet paces its one run by itself"
        )


def _pace_option(function: _Fn) -> _Fn:
    return click.option(
        "--pace",
        "pace_rules",
        multiple=True,
        metavar="TARGET=PER_MINUTE/AT_ONCE",
        callback=_pace_rules,
        help="Pace the logins to a server of your own, or change a provider's pace (repeatable; "
        "- for no limit of a kind). TARGET is a host or a glob matched against the SMTP and IMAP "
        "hosts (mail.example.com=6/2 for a server whose fail2ban bans bursts), or a preset id "
        "whose limits it replaces (google-workspace=30/5). The providers' presets pace their own "
        "hosts already. On a PostgreSQL fleet the limits hold across every worker and run "
        "together (give each the same --pace).",
    )(
        click.option(
            "--pace-group",
            "pace_group",
            envvar="INBOXCHECK_PACE_GROUP",
            metavar="NAME",
            callback=_pace_group,
            help="The logins of processes with the same group share the limits; other groups have "
            "their own (PostgreSQL fleets). Give each source address its own group (its public "
            "address, say), since providers count logins per address: workers behind 5 addresses "
            "then check 5 times the preset's pace. Default: one group for all "
            "[env INBOXCHECK_PACE_GROUP].",
        )(function)
    )


def _key_option(function: _Fn) -> _Fn:
    return click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The fleet's key (base64 of 32 bytes) [default: env INBOXCHECK_FLEET_KEY].",
    )(function)


def _key(key_file: Path | None) -> FleetKey:
    from inboxcheck.fleet._crypto import load_key

    return load_key(key_file=key_file)


def _with_store(db: str | None, work: Callable[[AsyncEngine], Awaitable[_T]], *, migrate: bool = True) -> _T:

    try:
        from inboxcheck.fleet._db import connect
    except ImportError as exc:
        from inboxcheck._errors import InboxcheckError

        raise InboxcheckError(
            f"the fleet needs the `fleet` extra ({exc.name or 'a module'} is missing): "
            "pip install 'inboxcheck[fleet]'"
        ) from None

    async def go() -> _T:
        from sqlalchemy.exc import SQLAlchemyError

        from inboxcheck.fleet._db import FleetDbError, reason, shown

        engine = await connect(db, auto_migrate=migrate)
        try:
            return await work(engine)
        except SQLAlchemyError as exc:
            # The database failed under us (gone, full, locked too long): what a transaction wrote
            # was rolled back whole; say why, without a traceback.
            raise FleetDbError(f"the fleet database {shown(str(engine.url))} failed: {reason(exc)}") from None
        finally:
            await engine.dispose()

    return run_async(go())


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _mark(state: str) -> str:
    out = sys.stdout
    mark = _MARKS.get(state, "?") if _unicode_ok(out) else state.upper()
    return click.style(mark, fg=_COLOURS.get(state, "white"), bold=True) if _colour_wanted(out) else mark
