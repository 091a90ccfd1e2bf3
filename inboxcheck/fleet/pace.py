"""The pace of a fleet's logins per provider: so many a minute, so many at once (preset data).

Re-checking thousands of mailboxes of one provider from one address must not look like credential
stuffing. The batch engine already bounds accounts per server host; this bounds them per provider,
whose many hosts (smtp.gmail.com, imap.gmail.com) are one service to its abuse detection. A
self-hosted server (Postfix with fail2ban) is paced by a rule the user gives (:class:`PaceRule`,
``--pace HOST=PER_MINUTE/AT_ONCE``), which also overrides a preset's own limits.

Two gates, one interface (``hold(account)``, an async context around the account's logins):

- :class:`ProviderPace`, in memory: one process (``fleet run`` on a SQLite fleet);
- :class:`SharedPace`, in the fleet's PostgreSQL database: every process together (queue workers,
  and ``fleet run`` on a PostgreSQL fleet, on as many machines as share the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from inboxcheck._presets import _glob_any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from inboxcheck._models import Account
    from inboxcheck._presets import Presets

__all__ = [
    "APPLICATION_NAME",
    "PaceLimits",
    "PaceRule",
    "ProviderPace",
    "RateWindow",
    "SharedPace",
    "make_pace",
]

log = logging.getLogger("inboxcheck.fleet.pace")
_LOCK_NOT_AVAILABLE: Final = "55P03"  # lock_timeout ran out
#: The application_name of the pace's own database sessions (one per paced login).
APPLICATION_NAME: Final = "inboxcheck pace"

_MOST: Final = 100_000
_RULE: Final = re.compile(r"^(?P<target>[^=\s]+)=(?P<minute>\d+|-)/(?P<once>\d+|-)$")


@dataclass(frozen=True)
class PaceLimits:
    """Logins of one provider: at most ``per_minute`` in any minute, ``at_once`` at a time."""

    per_minute: int | None = None
    at_once: int | None = None


@dataclass(frozen=True)
class PaceRule:
    """A pace the user gives: ``TARGET=PER_MINUTE/AT_ONCE`` (``-``: no limit of that kind).

    ``TARGET`` is a preset's id (its limits are replaced) or a host name or glob
    (``mail.example.com``, ``*.example.com``) matched against an account's SMTP and IMAP hosts:
    every account on those hosts is one paced provider.
    """

    target: str
    limits: PaceLimits

    @classmethod
    def parse(cls, text: str) -> PaceRule:
        """The rule in ``text``; ValueError with a sentence saying what is wrong."""
        match = _RULE.match(text.strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not a pace: write TARGET=PER_MINUTE/AT_ONCE, for instance "
                "mail.example.com=6/2 (a - for no limit of that kind: mail.example.com=6/-)"
            )
        minute, once = (None if v == "-" else int(v) for v in (match["minute"], match["once"]))
        if minute is None and once is None:
            raise ValueError(f"{text!r} sets no limit: give logins a minute, at once, or both")
        if minute == 0 or once == 0:
            raise ValueError(f"{text!r}: a limit of 0 would never log in; use 1 or more (or - for none)")
        if max(minute or 0, once or 0) > _MOST:
            raise ValueError(f"{text!r}: a limit above {_MOST:,} is no pace; write - for no limit")
        return cls(match["target"].lower().rstrip("."), PaceLimits(minute, once))


@dataclass
class RateWindow:
    """At most ``limit`` logins in any ``span`` seconds, in one process.

    A login counts from its start until ``span`` seconds after its end, as :class:`SharedPace`
    counts: whatever moment of the hold the server sees a login at, no ``span`` of the server's
    view holds more than ``limit`` (counting starts alone would let a slow start and a fast one
    land closer together at the server than they were at the gate).
    """

    limit: int
    span: float = 60.0
    clock: Callable[[], float] = time.monotonic
    #: Each counted login's end (None while it runs).
    logins: dict[int, float | None] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _next: int = 0

    def wait_needed(self, now: float) -> float:
        """Seconds until one more login may start (``inf``: until one of those running ends)."""
        for token, end in list(self.logins.items()):
            if end is not None and now - end >= self.span:
                del self.logins[token]
        if len(self.logins) < self.limit:
            return 0.0
        ends = [end for end in self.logins.values() if end is not None]
        return min(ends) + self.span - now if ends else math.inf

    def begin(self) -> int:
        """Count a login that starts now; its token."""
        self._next += 1
        self.logins[self._next] = None
        return self._next

    def finish(self, token: int, now: float) -> None:
        if token in self.logins:
            self.logins[token] = now
        self._ended.set()

    async def take(self) -> int:
        """Wait for a turn; the login's token, for :meth:`finish`."""
        async with self.lock:
            # The lock keeps anyone from taking the place the first of us waits for.
            while (wait := self.wait_needed(self.clock())) > 0:
                self._ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), None if wait == math.inf else wait)
            return self.begin()


class ProviderPace:
    """A gate for ``run_batch`` in one process: each account of a paced provider waits for its turn."""

    def __init__(self, presets: Presets, rules: Sequence[PaceRule] = ()) -> None:
        self.presets = presets
        self._overrides = {rule.target: rule.limits for rule in rules if rule.target in presets}
        self._host_rules = [rule for rule in rules if rule.target not in presets]
        #: The limits of each provider met so far (a preset's id, or ``host:PATTERN`` of a rule).
        self.limits: dict[str, PaceLimits] = {}
        self._windows: dict[str, RateWindow] = {}
        self._at_once: dict[str, asyncio.Semaphore] = {}
        self._providers: dict[tuple[str, int, str, int], str | None] = {}

    def provider(self, account: Account) -> str | None:
        # A fleet has few distinct servers and many accounts on each: each pair is matched once
        # (matching walks every preset's host patterns).
        servers = (account.smtp_host, account.smtp_port, account.imap_host, account.imap_port)
        if servers not in self._providers:
            self._providers[servers] = self._match(account)
        return self._providers[servers]

    def _match(self, account: Account) -> str | None:
        for rule in self._host_rules:
            # The user's own rule first: it names servers the presets know nothing of.
            if _glob_any(account.smtp_host, (rule.target,)) or _glob_any(account.imap_host, (rule.target,)):
                return self._paced(f"host:{rule.target}", rule.limits)
        preset = self.presets.by_smtp_host(account.smtp_host, account.smtp_port) or self.presets.by_imap_host(
            account.imap_host, account.imap_port
        )
        if preset is None:
            return None
        limits = self._overrides.get(preset.id) or PaceLimits(
            preset.limits.fleet_logins_per_minute, preset.limits.fleet_logins_at_once
        )
        return self._paced(preset.id, limits)

    def _paced(self, provider: str, limits: PaceLimits) -> str | None:
        if limits.per_minute is None and limits.at_once is None:
            return None
        if provider not in self.limits:
            self.limits[provider] = limits
            self._at_once[provider] = asyncio.Semaphore(self._front(limits))
            if limits.per_minute is not None:
                self._windows[provider] = RateWindow(limits.per_minute)
        return provider

    def _front(self, limits: PaceLimits) -> int:
        """How many of this process's accounts of one provider may be inside :meth:`hold` at once."""
        return limits.at_once or 1_000_000

    @contextlib.asynccontextmanager
    async def hold(self, account: Account) -> AsyncIterator[None]:
        provider = self.provider(account)
        if provider is None:
            yield
            return
        async with self._at_once[provider]:
            window = self._windows.get(provider)
            if window is None:
                yield
                return
            login = await window.take()
            try:
                yield
            finally:
                window.finish(login, window.clock())

    async def aclose(self) -> None:
        """Nothing to release in memory (the shared pace closes its database connections)."""


def _keys(provider: str) -> tuple[int, int]:
    """The advisory-lock keys of a provider: the (int4, slot) pair space of its login slots, and
    one bigint serialising its window (two key spaces PostgreSQL keeps apart)."""
    digest = hashlib.sha256(b"inboxcheck pace " + provider.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True), int.from_bytes(digest[4:12], "big", signed=True)


class SharedPace(ProviderPace):
    """The pace of every process of a PostgreSQL fleet together (queue workers, ``fleet run``s).

    Each paced login holds a connection of its own to the fleet's database for its whole length:

    - at once: it holds one of the provider's ``at_once`` slots, a session-level advisory lock
      ``(provider, slot)`` taken with ``pg_try_advisory_lock``; a login that finds every slot
      taken waits in the server for one of them (``pg_advisory_lock`` under a short
      ``lock_timeout``), then tries them all again. The lock lives as long as the connection: a worker
      that is killed, or cut off, loses its connection and PostgreSQL frees the slot (no lease to
      expire, no clock to trust);
    - per minute: a row in ``pace_logins`` from its start until ``span`` seconds after its end. A
      login starts only while fewer than ``per_minute`` rows are there: then whenever the server
      sees a login in [start, end] of its hold, any ``span`` seconds of the server's view hold at
      most ``per_minute`` logins (counting from the gate's start alone would let a slow start and a
      fast one land closer together than the gate saw them). The rows are read and written under
      ``pg_advisory_xact_lock`` of the provider, with the database's clock, so machines with
      skewed clocks agree; the row of a login whose connection is gone is ended when the next one
      looks.

    An in-process semaphore and a lock stand in front, so that a worker waits in memory and holds
    a connection per login in progress and one more per provider, not one per waiting account. A
    database error while taking a slot or a row propagates: the account is not checked (the queue
    retries the job), never checked unpaced. Cancelled (SIGTERM, Ctrl-C), the connection closes and
    takes the slot and any unfinished row with it.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        presets: Presets,
        rules: Sequence[PaceRule] = (),
        *,
        span: float = 60.0,
        poll: float = 0.5,
        rng: random.Random | None = None,
        group: str | None = None,
    ) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        super().__init__(presets, rules)
        if engine.dialect.name != "postgresql":
            raise ValueError("the shared pace needs a PostgreSQL fleet")
        self.span = span
        self.poll = poll
        # Processes of one group share the limits; another group has its own (a source address).
        self.group = group
        self._rng = rng or random.Random()
        self._turns: dict[str, asyncio.Lock] = {}
        # Its own connections, one per login, closed after it: never in the store's pool, whose
        # size is for short transactions, and never back in a pool with a lock still held.
        self._engine = create_async_engine(
            engine.url,
            poolclass=NullPool,
            pool_reset_on_return=None,
            # What these sessions are, for whoever reads pg_stat_activity.
            connect_args={"application_name": APPLICATION_NAME},
        )

    def _front(self, limits: PaceLimits) -> int:
        # A login is in the window from its start, so no more than per_minute are ever at once.
        return limits.at_once or limits.per_minute or 1_000_000

    @contextlib.asynccontextmanager
    async def hold(self, account: Account) -> AsyncIterator[None]:
        provider = self.provider(account)
        if provider is None:
            yield
            return
        limits = self.limits[provider]
        async with self._at_once[provider], contextlib.AsyncExitStack() as held:
            # One of this process's logins of a provider waits on the database at a time, the
            # others in memory: a worker holds a session per login in progress, and one more.
            async with self._turns.setdefault(provider, asyncio.Lock()):
                conn = await held.enter_async_context(self._engine.connect())
                # The limits' scope in the database: the provider, within the group if any.
                scope = provider if self.group is None else f"{provider}@{self.group}"
                if limits.at_once is not None:
                    await self._take_slot(conn, scope, limits.at_once)
                login: int | None = None
                if limits.per_minute is not None:
                    login = await self._take_window(conn, scope, limits.per_minute)
            try:
                yield
            finally:
                if login is not None:
                    await self._end(conn, login)

    async def _take_slot(self, conn: AsyncConnection, provider: str, at_once: int) -> None:
        import sqlalchemy as sa
        from sqlalchemy.exc import OperationalError

        key, _ = _keys(provider)
        first = self._rng.randrange(at_once)
        while True:
            for step in range(at_once):
                taken = (
                    await conn.execute(
                        sa.text("SELECT pg_try_advisory_lock(:key, :slot)"),
                        {"key": key, "slot": (first + step) % at_once},
                    )
                ).scalar_one()
                await conn.commit()
                if taken:
                    return
            # Every slot is taken: wait inside the server for one of them (woken the moment it is
            # free, no polling), for a jittered while, then look at them all again.
            wait_ms = int(self.poll * 1000 * self._rng.uniform(1.0, 3.0))
            try:
                await conn.execute(
                    sa.text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{wait_ms}ms"}
                )
                await conn.execute(
                    sa.text("SELECT pg_advisory_lock(:key, :slot)"),
                    {"key": key, "slot": self._rng.randrange(at_once)},
                )
                await conn.commit()
                return
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                await conn.rollback()

    async def _take_window(self, conn: AsyncConnection, provider: str, per_minute: int) -> int:
        import sqlalchemy as sa

        _, key = _keys(provider)
        where = {"provider": provider, "span": self.span}
        while True:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            # A login whose session is gone (its worker killed) ended at the latest now.
            await conn.execute(
                sa.text(
                    "UPDATE pace_logins SET ended_at = extract(epoch FROM clock_timestamp())"
                    " WHERE provider = :provider AND ended_at IS NULL AND NOT EXISTS"
                    " (SELECT 1 FROM pg_stat_activity a WHERE a.pid = pace_logins.holder)"
                ),
                where,
            )
            await conn.execute(
                sa.text(
                    "DELETE FROM pace_logins WHERE provider = :provider"
                    " AND ended_at <= extract(epoch FROM clock_timestamp()) - :span"
                ),
                where,
            )
            count, first_end, now = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*), min(ended_at), extract(epoch FROM clock_timestamp())::float"
                        " FROM pace_logins WHERE provider = :provider"
                    ),
                    where,
                )
            ).one()
            if count < per_minute:
                login = (
                    await conn.execute(
                        sa.text(
                            "INSERT INTO pace_logins (provider, holder, started_at)"
                            " VALUES (:provider, pg_backend_pid(), extract(epoch FROM clock_timestamp()))"
                            " RETURNING id"
                        ),
                        where,
                    )
                ).scalar_one()
                await conn.commit()
                return int(login)
            await conn.commit()
            # Full: the first ended login leaves the window then; with none ended yet, look again.
            wait = first_end + self.span - now if first_end is not None else self.poll
            await asyncio.sleep(max(wait, 0.0) + self.poll * self._rng.uniform(0.05, 0.2))

    async def _end(self, conn: AsyncConnection, login: int) -> None:
        import sqlalchemy as sa
        from sqlalchemy.exc import SQLAlchemyError

        try:
            await conn.execute(
                sa.text(
                    "UPDATE pace_logins SET ended_at = extract(epoch FROM clock_timestamp()) WHERE id = :id"
                ),
                {"id": login},
            )
            await conn.commit()
        except SQLAlchemyError as exc:
            # The connection is gone: its row is ended by the next login that looks.
            log.warning("the end of a paced login was not recorded: %s", type(exc).__name__)

    async def aclose(self) -> None:
        await self._engine.dispose()


def make_pace(
    engine: AsyncEngine, presets: Presets, rules: Sequence[PaceRule] = (), *, group: str | None = None
) -> ProviderPace:
    """The gate for a fleet's database: shared by every process on PostgreSQL (of ``group``, if
    given), in memory on SQLite (one process: a group means nothing there)."""
    if engine.dialect.name == "postgresql":
        return SharedPace(engine, presets, rules, group=group)
    return ProviderPace(presets, rules)
