"""The fleet's database: the URL a user gives, the async engine behind it, and its migrations.

Users write ``sqlite:///path`` or ``postgresql://...``; the engine uses the async drivers (aiosqlite,
psycopg 3) behind them. Every store function takes the engine, so a server or a queue worker can
share one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inboxcheck._errors import InboxcheckError

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["DEFAULT_DB", "FleetDbError", "async_url", "connect", "migrate", "schema_state", "writing"]

DEFAULT_DB: Final = "sqlite:///inboxcheck-fleet.db"
DB_ENV: Final = "INBOXCHECK_FLEET_DB"
HEAD: Final = "0004"
# The execution option that marks a write transaction (see writing()).
_WRITE: Final = "inboxcheck_write"


class FleetDbError(InboxcheckError):
    """The fleet's database cannot be used: a bad URL, an unreachable server, an old schema."""


def async_url(url: str) -> str:
    """The SQLAlchemy URL with its async driver, from what a user wrote (no password in errors)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise FleetDbError(
            "the fleet database must be a URL: sqlite:///PATH or postgresql://USER@HOST/NAME"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise FleetDbError("the fleet database must be a file: sqlite:///PATH")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise FleetDbError(f"{backend!r} databases are not supported: use sqlite:///PATH or postgresql://...")


def shown(url: str) -> str:
    """``url`` with any password masked, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown as nothing
        return "(the given URL)"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off (it would BEGIN only before the first INSERT or
    # UPDATE, leaving the reads before it outside the transaction): _sqlite_begin says BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Foreign keys (cascading deletes), WAL (readers never wait for the writer), and a wait for the
    # lock instead of an immediate "database is locked" when a second process writes.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Every transaction is a real one; a write transaction takes the write lock when it begins.

    A deferred transaction that has read and then writes cannot wait for the lock (SQLite answers
    "database is locked" at once, as its snapshot may be stale: busy_timeout does not apply), so
    writers say BEGIN IMMEDIATE and wait there, up to busy_timeout, before reading anything.
    """
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writing(engine: AsyncEngine) -> AbstractAsyncContextManager[AsyncConnection]:
    """A write transaction (``async with writing(engine) as conn``), in place of ``engine.begin()``:
    on SQLite it holds the write lock from its start, so that two processes writing the same fleet
    take turns instead of one failing with "database is locked"."""
    return engine.execution_options(**{_WRITE: True}).begin()


def make_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` (not yet connected)."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    target = async_url(url)
    if target.startswith("sqlite"):
        engine = create_async_engine(target)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # A pooled connection is tried before use (a round trip): after a restart of the server, the
    # connections it closed are replaced instead of failing the next transaction.
    return create_async_engine(target, pool_pre_ping=True)


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def _current(connection: Connection) -> str | None:
    """The revision Alembic recorded, read without importing Alembic (a third of a second that every
    command would pay at start-up)."""
    import sqlalchemy as sa

    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    value = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    return None if value is None else str(value)


async def schema_state(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (``None``: empty)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def migrate(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision, in one transaction; return (before, after)."""
    from alembic import command

    def upgrade(connection: Connection) -> str | None:
        before = _current(connection)
        command.upgrade(_alembic_config(connection), "head")
        return before

    async with writing(engine) as connection:
        before = await connection.run_sync(upgrade)
    return before, HEAD


async def connect(url: str | None = None, *, auto_migrate: bool = True) -> AsyncEngine:
    """The engine for ``url`` (else INBOXCHECK_FLEET_DB, else the default file), ready to use.

    An empty database is given the schema; one at an older revision is refused with the command
    that migrates it (a migration is a decision, not a side effect of a read).
    """
    from sqlalchemy.exc import SQLAlchemyError

    url = url or os.environ.get(DB_ENV) or DEFAULT_DB
    engine = make_engine(url)
    try:
        revision = await schema_state(engine)
        if revision is None and auto_migrate:
            await migrate(engine)
        elif revision is not None and revision != HEAD and auto_migrate:
            raise FleetDbError(
                f"the fleet database {shown(url)} is at schema {revision}; run `inboxcheck fleet migrate`"
            )
    except SQLAlchemyError as exc:
        await engine.dispose()
        raise FleetDbError(f"cannot open the fleet database {shown(url)}: {reason(exc)}") from None
    except BaseException:
        await engine.dispose()
        raise
    return engine


def reason(exc: BaseException) -> str:
    """The driver's own first line, which names the problem but never the password."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
