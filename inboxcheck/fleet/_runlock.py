"""One round at a time per fleet: the lock a ``fleet run`` (or each round of ``fleet watch``) holds.

Two runs on the same fleet would otherwise both take the open round and log in to its accounts
twice (the store keeps one report of each, but the logins were made). The second run waits here
until the first has finished its round, then plans its own: the accounts due by then.

- SQLite: an exclusive ``flock`` on a file beside the database (``PATH-run.lock``, holding the pid
  of the run that has it). Never the database file itself: closing any other descriptor of it would
  drop SQLite's own POSIX locks in this process.
- PostgreSQL: a session advisory lock, on a connection held for the round; the holder's pid is in
  its ``application_name``.

The operating system (or the server, when the connection drops) releases either when a run is
killed, so a run killed with SIGKILL never leaves the fleet locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["round_lock"]

# pg_advisory_lock key of `fleet run` ("inbxrun" in ASCII); `fleet schedule` has its own.
PG_LOCK: Final = 0x696E6278_72756E
_APP: Final = "inboxcheck fleet run pid "
POLL: Final = 0.2


@contextlib.asynccontextmanager
async def round_lock(
    engine: AsyncEngine, *, on_wait: Callable[[int | None], None] | None = None, poll: float = POLL
) -> AsyncIterator[None]:
    """Hold the fleet's round lock for the ``async with`` block, waiting for it while another run
    holds it; ``on_wait`` is told once, with that run's pid when it can be known. Cancellable while
    waiting."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database is not None  # async_url() refuses a URL without a file
        async with _file_lock(f"{database}-run.lock", on_wait=on_wait, poll=poll):
            yield
    else:
        async with engine.connect() as conn:
            # No transaction left open while the round runs: the lock belongs to the session.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await _pg_lock(conn, on_wait=on_wait, poll=poll)
            try:
                await _refuse_queued_round(conn)
                yield
            finally:
                try:
                    await _pg_unlock(conn)
                except Exception:  # noqa: BLE001 - closed instead: the server then drops the lock
                    await conn.invalidate()


@contextlib.asynccontextmanager
async def _file_lock(
    path: str, *, on_wait: Callable[[int | None], None] | None, poll: float
) -> AsyncIterator[None]:
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        from inboxcheck.fleet._db import FleetDbError

        raise FleetDbError(
            f"cannot open the fleet's run lock {path}: {exc.strerror or exc} (a file that runs "
            "create beside the database, as SQLite creates its -wal and -shm files there)"
        ) from None
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    on_wait(_pid(os.pread(fd, 32, 0).decode("ascii", "replace")))
                told = True
                await asyncio.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        # Closing the descriptor releases the lock; the file stays (removing it would race a waiter
        # that has opened it already).
        os.close(fd)


async def _pg_lock(
    conn: AsyncConnection, *, on_wait: Callable[[int | None], None] | None, poll: float
) -> None:
    import sqlalchemy as sa

    await conn.execute(
        sa.text("SELECT set_config('application_name', :name, false)"), {"name": f"{_APP}{os.getpid()}"}
    )
    told = False
    while not (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(PG_LOCK)))).scalar_one():
        if not told and on_wait is not None:
            holder = (
                await conn.execute(
                    sa.text(
                        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                        "AND l.classid::bigint = :high AND l.objid::bigint = :low AND l.objsubid = 1"
                    ),
                    {"high": PG_LOCK >> 32, "low": PG_LOCK & 0xFFFFFFFF},
                )
            ).scalar_one_or_none()
            on_wait(
                _pid(holder[len(_APP) :]) if isinstance(holder, str) and holder.startswith(_APP) else None
            )
        told = True
        await asyncio.sleep(poll)


async def _refuse_queued_round(conn: AsyncConnection) -> None:
    """A fleet whose checks are on the queue (jobs waiting or running) is not run in process too:
    the run would take the same round and log in to the accounts the workers are checking."""
    import sqlalchemy as sa

    from inboxcheck.fleet._store_base import QUEUE_NAME

    has_queue = (
        await conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
    ).scalar_one()
    if not has_queue:
        return
    pending = (
        await conn.execute(
            sa.text(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = :queue"
                " AND status IN ('todo', 'doing')"
            ),
            {"queue": QUEUE_NAME},
        )
    ).scalar_one()
    if pending:
        from inboxcheck.fleet._db import FleetDbError

        raise FleetDbError(
            f"this fleet's checks are on the queue ({pending} jobs waiting or running): a `fleet run` "
            "now would check the same accounts a second time. Let the workers finish the round "
            "(`inboxcheck fleet queue` shows it), then run; or keep this fleet on the queue"
        )


async def _pg_unlock(conn: AsyncConnection) -> None:
    import sqlalchemy as sa

    await conn.execute(sa.select(sa.func.pg_advisory_unlock(PG_LOCK)))
    # The connection goes back to the pool: it no longer speaks for a run.
    await conn.execute(sa.text("SELECT set_config('application_name', '', false)"))


def _pid(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None
