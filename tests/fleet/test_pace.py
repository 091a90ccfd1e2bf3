"""The fleet's pace per provider: logins a minute and at once, from the preset data."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from inboxcheck._models import Account
from inboxcheck._presets import load_presets
from inboxcheck.fleet.pace import APPLICATION_NAME, PaceLimits, PaceRule, ProviderPace, RateWindow, SharedPace
from lab.postgres import Postgres
from tests.fleet.conftest import _create_database
from tests.helpers import batch_user, google_payload, write_jsonl
from tests.scenarios import free_port


def test_the_window_counts_a_login_until_a_span_after_its_end() -> None:
    window = RateWindow(3, span=60.0)
    logins = []
    for at in (0.0, 1.0, 2.0):
        assert window.wait_needed(at) == 0
        logins.append(window.begin())
    assert window.wait_needed(30.0) == math.inf  # all three still running: until one ends
    window.finish(logins[1], 10.0)
    window.finish(logins[0], 20.0)
    assert window.wait_needed(30.0) == 40.0  # the login ended at 10 leaves the window at 70
    assert window.wait_needed(70.0) == 0
    assert sorted(window.logins.values(), key=str) == [20.0, None]


async def test_in_one_process_a_login_waits_for_one_to_end_and_leave_the_window() -> None:
    now = [0.0]
    window = RateWindow(1, span=5.0, clock=lambda: now[0])
    first = await window.take()
    second = asyncio.ensure_future(window.take())
    await asyncio.sleep(0.01)
    assert not second.done()  # the first runs: no end, no turn
    now[0] = 100.0
    window.finish(first, now[0])  # ended at 100: its place is free at 105 (clock read when woken)
    await asyncio.sleep(0.01)
    assert not second.done()
    now[0] = 105.0
    window.finish(first, 100.0)  # wakes the waiter again, which reads the clock
    assert await asyncio.wait_for(second, 5) == first + 1


def test_google_and_microsoft_are_paced_by_their_preset_and_custom_hosts_are_not() -> None:
    presets = load_presets()
    for preset_id in ("google-workspace", "microsoft-365", "outlook-com"):
        limits = presets.get(preset_id).limits
        assert limits.fleet_logins_per_minute and limits.fleet_logins_at_once
    pace = ProviderPace(presets)
    assert pace.provider(Account.model_validate(google_payload())) == "google-workspace"
    assert pace.provider(Account.model_validate(batch_user(1))) is None


async def test_no_more_than_the_provider_allows_at_once() -> None:
    presets = load_presets()
    pace = ProviderPace(presets)
    at_once = presets.get("google-workspace").limits.fleet_logins_at_once
    assert at_once is not None
    account = Account.model_validate(google_payload())
    inside = peak = 0

    async def login() -> None:
        nonlocal inside, peak
        async with pace.hold(account):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(login() for _ in range(at_once * 2)))
    assert peak == at_once


# --- rules the user gives (--pace) ----------------------------------------------------------------


def test_a_pace_rule_names_a_host_or_a_preset_and_bad_ones_say_what_to_write() -> None:
    assert PaceRule.parse("Mail.Example.TEST.=6/2") == PaceRule("mail.example.test", PaceLimits(6, 2))
    assert PaceRule.parse("*.example.test=6/-") == PaceRule("*.example.test", PaceLimits(6, None))
    assert PaceRule.parse("google-workspace=-/3").limits == PaceLimits(None, 3)
    for bad in (
        "mail.example.test",
        "mail.example.test=6",
        "=6/2",
        "x=a/b",
        "x=-/-",
        "x=0/2",
        "x y=1/1",
        "x=1/999999",
    ):
        with pytest.raises(ValueError, match=r"pace|limit"):
            PaceRule.parse(bad)


def test_a_host_rule_paces_a_server_of_ones_own_and_a_preset_rule_replaces_its_limits() -> None:
    presets = load_presets()
    pace = ProviderPace(
        presets, [PaceRule.parse("*.example.test=6/2"), PaceRule.parse("google-workspace=30/5")]
    )
    assert pace.provider(Account.model_validate(batch_user(1))) == "host:*.example.test"
    assert pace.limits["host:*.example.test"] == PaceLimits(6, 2)
    assert pace.provider(Account.model_validate(google_payload())) == "google-workspace"
    assert pace.limits["google-workspace"] == PaceLimits(30, 5)
    other = Account.model_validate(batch_user(2, smtp_host="smtp.other.test", imap_host="imap.other.test"))
    assert pace.provider(other) is None


# --- the shared pace: every process together, in PostgreSQL ---------------------------------------

PACED = Account.model_validate(batch_user(1))


@pytest.fixture
async def pg_url(postgres: Postgres) -> str:
    from inboxcheck.fleet._db import connect

    url = postgres.url(_create_database(postgres))
    engine = await connect(url)  # the schema, pace_logins with it
    await engine.dispose()
    return url


@contextlib.asynccontextmanager
async def _workers(url: str, rule: str, count: int = 2, **kwargs: Any) -> AsyncIterator[list[SharedPace]]:
    """``count`` shared paces on engines of their own: as many worker processes would have."""
    from inboxcheck.fleet._db import make_engine

    engines = [make_engine(url) for _ in range(count)]
    paces = [SharedPace(e, load_presets(), [PaceRule.parse(rule)], **kwargs) for e in engines]
    try:
        yield paces
    finally:
        for pace in paces:
            await pace.aclose()
        for engine in engines:
            await engine.dispose()


def _pg(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(query.encode(), args).fetchall())


async def test_two_workers_together_never_hold_more_logins_than_at_once(pg_url: str) -> None:
    inside = peak = 0

    async def login(pace: SharedPace) -> None:
        nonlocal inside, peak
        async with pace.hold(PACED):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    async with _workers(pg_url, "*.example.test=-/2", poll=0.05) as paces:
        # Each worker alone would let two in at once: together they still let in two.
        await asyncio.gather(*(login(paces[i % 2]) for i in range(12)))
    assert peak == 2


async def test_two_workers_together_never_start_more_than_the_window_allows(pg_url: str) -> None:
    """Per "minute" (a 2 s window here): a login counts from its start until the window after its
    end, so no server sees more than the limit in any window, however the logins are spread."""
    span, limit = 2.0, 3
    logins: list[tuple[float, float]] = []

    async def login(pace: SharedPace) -> None:
        async with pace.hold(PACED):
            start = time.monotonic()
            await asyncio.sleep(0.1)
            logins.append((start, time.monotonic()))

    async with _workers(pg_url, f"*.example.test={limit}/-", span=span, poll=0.05) as paces:
        await asyncio.gather(*(login(paces[i % 2]) for i in range(8)))
    assert len(logins) == 8
    for start, _ in logins:
        # The logins that began earlier and had not left the window when this one began.
        before = [s for s, end in logins if s < start and end > start - span]
        assert len(before) < limit, (start, sorted(logins))
    [(left,)] = _pg(pg_url, "SELECT count(*) FROM pace_logins WHERE ended_at IS NULL")
    assert left == 0


async def test_workers_of_one_pace_group_share_the_limit_and_another_group_has_its_own(pg_url: str) -> None:
    """Providers count logins per source address: a group (one per address) has limits of its own."""
    inside: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def login(pace: SharedPace, group: str) -> None:
        async with pace.hold(PACED):
            inside[group] += 1
            peak[group] = max(peak[group], inside[group])
            await asyncio.sleep(0.05)
            inside[group] -= 1

    async with (
        _workers(pg_url, "*.example.test=-/2", poll=0.05, group="a") as group_a,
        _workers(pg_url, "*.example.test=-/2", poll=0.05, group="b") as group_b,
    ):
        await asyncio.gather(
            *(login(group_a[i % 2], "a") for i in range(10)),
            *(login(group_b[i % 2], "b") for i in range(10)),
        )
    # Two at once within each group (its two workers together), so four at once in all.
    assert peak == {"a": 2, "b": 2}


async def _slots_free(url: str, provider: str, at_once: int) -> bool:
    """Whether another session could take every slot of ``provider`` now (and gives them back)."""
    from inboxcheck.fleet.pace import _keys

    key, _ = _keys(provider)
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        taken = [
            (await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, slot))).fetchone())
            for slot in range(at_once)
        ]
        await conn.execute("SELECT pg_advisory_unlock_all()")
    return all(row is not None and row[0] for row in taken)


async def test_a_cancelled_login_frees_its_slot_and_leaves_no_task(pg_url: str) -> None:
    before = asyncio.all_tasks()
    async with _workers(pg_url, "*.example.test=10/1", poll=0.05) as [pace, other]:
        entered = asyncio.Event()

        async def login(pace: SharedPace) -> None:
            async with pace.hold(PACED):
                entered.set()
                await asyncio.sleep(3600)

        holding = asyncio.ensure_future(login(pace))
        await entered.wait()
        assert not await _slots_free(pg_url, "host:*.example.test", 1)
        # Another worker's login waits for the slot, inside the server (a lock wait, not a poll);
        # cancelled while it waits, it goes too.
        waiting = asyncio.ensure_future(login(other))
        deadline = time.monotonic() + 60
        while not _pg(
            pg_url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event = 'advisory'",
            APPLICATION_NAME,
        ):
            assert time.monotonic() < deadline and not waiting.done()
            await asyncio.sleep(0.02)
        for task in (waiting, holding):
            task.cancel()
        await asyncio.gather(waiting, holding, return_exceptions=True)
        assert await _slots_free(pg_url, "host:*.example.test", 1)
    assert asyncio.all_tasks() == before
    # The window's row of the cancelled login is ended (by its own end, or the next that looks).
    assert _pg(pg_url, "SELECT count(*) FROM pace_logins WHERE ended_at IS NULL") == [(0,)]


async def test_a_killed_connection_frees_its_slot_and_its_row_is_ended_by_the_next_login(pg_url: str) -> None:
    async with _workers(pg_url, "*.example.test=10/1", poll=0.05) as [first, second]:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def long_login() -> None:
            async with first.hold(PACED):
                entered.set()
                await release.wait()

        holding = asyncio.ensure_future(long_login())
        await entered.wait()
        [(holder,)] = _pg(pg_url, "SELECT holder FROM pace_logins WHERE ended_at IS NULL")
        # The worker's connection dies (its machine cut off, the worker killed): PostgreSQL frees
        # the slot, and the next login (another worker) takes it and ends the dead login's row.
        _pg(pg_url, "SELECT pg_terminate_backend(%s)", holder)
        async with second.hold(PACED):
            rows = _pg(pg_url, "SELECT holder, ended_at IS NULL FROM pace_logins ORDER BY id")
        assert rows[0] == (holder, False) and rows[1][1] is True
        release.set()
        await holding  # the first login ends without an error: its end could not be recorded
    assert _pg(pg_url, "SELECT count(*) FROM pace_logins WHERE ended_at IS NULL") == [(0,)]


async def test_a_database_error_while_taking_a_slot_is_raised_never_a_login_unpaced() -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from inboxcheck.fleet._db import make_engine

    engine = make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    pace = SharedPace(engine, load_presets(), [PaceRule.parse("*.example.test=6/2")])
    entered = False
    try:
        with pytest.raises(SQLAlchemyError):
            async with pace.hold(PACED):
                entered = True
        # An account no rule paces needs no database.
        async with pace.hold(Account.model_validate(google_payload(smtp_host="x.test", imap_host="x.test"))):
            pass
    finally:
        await pace.aclose()
        await engine.dispose()
    assert not entered


def test_fleet_run_on_postgresql_waits_for_a_slot_another_process_holds(pg_url: str, tmp_path: Path) -> None:
    """``fleet run`` shares the pace of the workers: a slot held elsewhere (a worker's login) keeps
    its account waiting; given back, the run checks every account. A bad --pace is refused."""
    import psycopg

    from inboxcheck.fleet._crypto import new_key_text
    from inboxcheck.fleet.pace import _keys

    env = {**os.environ, "INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": pg_url}
    fleet = [sys.executable, "-m", "inboxcheck", "fleet"]
    source = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(3)])
    added = subprocess.run([*fleet, "add", str(source)], env=env, capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stderr
    bad = subprocess.run(
        [*fleet, "run", "--pace", "mail.example.test=6"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "TARGET=PER_MINUTE/AT_ONCE" in bad.stderr and "Traceback" not in bad.stderr

    key, _ = _keys("host:mail.example.test")
    with psycopg.connect(pg_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s, 0)", (key,)).fetchone() == (True,)
        run = subprocess.Popen(
            [*fleet, "run", "--only", "account", "-q", "--pace", "mail.example.test=-/1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            # The run is at the gate once it has opened a pace connection (to ask for the slot).
            while not _pg(
                pg_url, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", APPLICATION_NAME
            ):
                assert run.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            assert _pg(pg_url, "SELECT count(*) FROM reports") == [(0,)]
            other.execute("SELECT pg_advisory_unlock(%s, 0)", (key,))
            _, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert run.returncode == 0, err
    assert _pg(pg_url, "SELECT count(*) FROM reports") == [(3,)]


async def test_a_worker_whose_pace_loses_the_database_fails_the_job_for_a_retry(pg_url: str) -> None:
    """The queue's check: the pace cannot reach the database, so the account is not checked, no
    report is recorded, and the job fails with an error Procrastinate's retry strategy retries."""
    from types import SimpleNamespace

    from sqlalchemy.exc import SQLAlchemyError

    from inboxcheck._options import CheckOptions, Family
    from inboxcheck.fleet import store
    from inboxcheck.fleet._crypto import FleetKey
    from inboxcheck.fleet._db import make_engine
    from inboxcheck.fleet.queue import WorkerState, _Retry, check_one

    key = FleetKey(b"k" * 32)
    engine = make_engine(pg_url)
    away = make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    pace = SharedPace(away, load_presets(), [PaceRule.parse("*.example.test=6/2")])
    try:
        await store.add_accounts(engine, [PACED], key=key, interval=3600, now=time.time())
        plan = await store.begin_round(engine, all_accounts=True, now=time.time())
        assert plan is not None
        state = WorkerState(
            engine=engine,
            key=key,
            options=CheckOptions(families=frozenset({Family.ACCOUNT})),
            presets=load_presets(),
            pace=pace,
        )
        with pytest.raises(SQLAlchemyError) as failed:
            await check_one(state, account_id=plan.remaining[0], round_id=plan.round_id)
        assert _pg(pg_url, "SELECT count(*) FROM reports") == [(0,)]
        retry = _Retry().get_retry_decision(exception=failed.value, job=SimpleNamespace(attempts=0))
        assert retry is not None
    finally:
        await pace.aclose()
        await away.dispose()
        await engine.dispose()
