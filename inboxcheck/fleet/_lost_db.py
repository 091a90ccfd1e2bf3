"""A queue process whose database went away (restarted, shut down, cut off): how it is told
apart from a bug, and said once, in one line, instead of a traceback per failed try.

Used by the queue's worker and scheduler (:mod:`inboxcheck.fleet.queue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["lost_database", "quiet_lost_database", "reason", "shown"]


def lost_database(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps) says the database went away: restarted, shut down,
    unreachable, a pool that gave no connection in time. Such errors pass; others are bugs."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    for _ in range(10):
        if exc is None:
            return False
        if isinstance(exc, (psycopg.OperationalError, ConnectionError)):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        nested = getattr(exc, "orig", None) or exc.__cause__
        exc = nested if isinstance(nested, BaseException) else None
    return False


class _LostDatabaseFilter(logging.Filter):
    """Procrastinate logs each failure of a lost connection with its traceback, and psycopg's pool
    each failed try to connect: the worker says it once, in one line (``run_worker``), with the
    pool's last reason (kept here). Other records pass untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("psycopg.pool") and str(record.msg).startswith("error connecting"):
            if record.args and isinstance(record.args, tuple):
                self.last_error = str(record.args[-1]).strip().splitlines()[0]
            return False
        error = record.exc_info[1] if record.exc_info else None
        return not lost_database(error)


@contextlib.contextmanager
def quiet_lost_database() -> Iterator[_LostDatabaseFilter]:
    """While a worker runs, the warnings and errors of Procrastinate and of psycopg's pool go to
    stderr (as Python's last resort would show them) without those about the lost database; the
    loggers stay as they are if the program configured logging itself."""
    quiet = _LostDatabaseFilter()
    loop = asyncio.get_running_loop()
    exception_handler = loop.get_exception_handler()

    def on_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # A job whose status Procrastinate could not write (the database gone) ends its task with
        # that error, which nobody reads: the stalled-job recovery takes the job again.
        if lost_database(context.get("exception")):
            return
        if exception_handler is not None:
            exception_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # The loop's handler stays after: the tasks of a lost connection may be collected later.
    loop.set_exception_handler(on_exception)
    loggers = [logging.getLogger(name) for name in ("procrastinate", "psycopg.pool")]
    if logging.getLogger().handlers or any(logger.handlers for logger in loggers):
        yield quiet
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(quiet)
    before = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield quiet
    finally:
        for logger, propagate in zip(loggers, before, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate


def shown(text: str) -> str:
    """The server's words made safe for a terminal (the project's escape)."""
    from inboxcheck.cli._terminal import escape

    return escape(text)


def reason(exc: BaseException) -> str:
    """The first line of what the driver said (never a password: libpq does not repeat it)."""
    inner = exc
    for _ in range(10):
        nested = getattr(inner, "orig", None) or inner.__cause__
        if not isinstance(nested, BaseException):
            break
        inner = nested
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__
