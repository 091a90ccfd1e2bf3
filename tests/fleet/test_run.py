"""``fleet run`` as users run it: a real subprocess killed with SIGKILL, then run again."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa

from inboxcheck.fleet._crypto import new_key_text
from inboxcheck.fleet._db import connect
from inboxcheck.fleet._schema import reports, rounds
from tests.helpers import CANARY, batch_user, write_jsonl
from tests.peers import Peer, PeerConn, serving_in_thread


def _env(key: str, db: str) -> dict[str, str]:
    return {**os.environ, "INBOXCHECK_FLEET_KEY": key, "INBOXCHECK_FLEET_DB": db}


def _run_killed_after(args: list[str], env: dict[str, str], delay: float) -> int:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return proc.returncode


async def _reports_per_round(db: str) -> tuple[Counter[tuple[int, int]], list[Any]]:
    engine = await connect(db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(reports.c.round_id, reports.c.account_id))).all()
            all_rounds = (await conn.execute(sa.select(rounds.c.id, rounds.c.finished_at))).all()
    finally:
        await engine.dispose()
    return Counter((r.round_id, r.account_id) for r in rows), list(all_rounds)


@pytest.mark.slow
def test_a_run_killed_at_random_moments_ends_with_one_report_per_account_in_its_round(
    tmp_path: Path, fleet_db: str
) -> None:
    count = 3000
    key = new_key_text()
    env = _env(key, fleet_db)
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(count)])
    inboxcheck = [sys.executable, "-m", "inboxcheck", "fleet"]
    added = subprocess.run(
        [*inboxcheck, "add", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert added.returncode == 0, added.stderr
    run = [*inboxcheck, "run", "--only", "account", "-q"]
    rng = random.Random(20261207)
    kills = 0
    deadline = time.monotonic() + 240
    returncode = _run_killed_after(run, env, rng.uniform(1.5, 3.0))
    while returncode == -signal.SIGKILL and time.monotonic() < deadline:
        kills += 1
        returncode = _run_killed_after(run, env, rng.uniform(1.0, 2.0) + kills * 0.2)
    if returncode == -signal.SIGKILL:
        # Out of time for kills (a very loaded machine): the last run is left to finish.
        returncode = subprocess.run(run, env=env, capture_output=True, check=False).returncode
    assert returncode == 0
    assert kills >= 1, "the first run finished before it could be killed; raise the account count"
    per_round, all_rounds = asyncio.run(_reports_per_round(fleet_db))
    assert len(all_rounds) == 1 and all_rounds[0].finished_at is not None
    assert set(per_round.values()) == {1}
    assert sorted(account for _, account in per_round) == list(range(1, count + 1))
    # Nothing more is due: a further run checks nothing and records nothing.
    again = subprocess.run(run[:-1], env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "no account is due" in again.stderr
    assert CANARY not in again.stderr + again.stdout + added.stdout + added.stderr


def _fleet_run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "inboxcheck", "fleet", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(stream: IO[str]) -> tuple[list[str], threading.Thread]:
    """The lines of ``stream`` as they come, read by a thread (a test polls them without blocking)."""
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(stream), daemon=True)
    reader.start()
    return seen, reader


@pytest.mark.lab
def test_two_runs_at_once_on_one_fleet_check_each_account_once_and_add_still_works(
    lab: Any, tmp_path: Path, fleet_db: str
) -> None:
    env = _env(new_key_text(), fleet_db)
    host, port = lab.nameserver
    check = ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file), "--timeout", "60"]
    released = threading.Event()

    async def held_greeting(conn: PeerConn) -> None:
        # An SMTP server that says nothing until the test lets it go: the first run's round stays
        # open, one account unchecked, for as long as the test needs.
        await asyncio.to_thread(released.wait)
        await conn.send("554 5.3.2 no service here\r\n")

    alice, bob = lab.account("alice"), lab.account("bob")
    inboxcheck = [sys.executable, "-m", "inboxcheck", "fleet"]

    def add(name: str, rows: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        path = write_jsonl(tmp_path / name, rows)
        return subprocess.run(
            [*inboxcheck, "add", str(path)], env=env, capture_output=True, text=True, check=False
        )

    with serving_in_thread(lambda: Peer(held_greeting)) as peer:
        held = lab.account("carol@unsigned.test") | {
            "email_address": "held@lab.test",
            "smtp_host": "127.0.0.1",
            "smtp_port": peer.port,
            "smtp_use_tls": False,
        }
        try:
            assert add("fleet.jsonl", [alice, held]).returncode == 0
            first = _fleet_run(check, env)
            assert first.stdout is not None and first.stderr is not None
            started = first.stdout.readline()
            assert started.startswith("alice@lab.test"), started + first.stderr.read()
            # While the first run waits on the held server: an account added, a second run started.
            added = add("bob.jsonl", [bob])
            second = _fleet_run(check, env)
            assert second.stderr is not None
            second_err, reader = _lines(second.stderr)
            deadline = time.monotonic() + 120
            # The second run either waits for the round (right) or checks the held account too
            # (wrong: a second connection to the held server); then the server is let go.
            while not any("waiting" in line for line in second_err) and len(peer.connections) < 2:
                assert second.poll() is None and time.monotonic() < deadline, second_err
                time.sleep(0.05)
        finally:
            released.set()
        rest, first_err = first.communicate(timeout=120)
        second_out, _ = second.communicate(timeout=120)
        reader.join(timeout=30)
        connections = len(peer.connections)
    outputs = "".join([started, rest, first_err, second_out, *second_err, added.stdout, added.stderr])
    assert added.returncode == 0, added.stderr
    assert first.returncode == 1, first_err
    assert second.returncode == 0, second_err
    assert "Traceback" not in outputs and "locked" not in outputs
    assert all(a["smtp_password"] not in outputs for a in (alice, bob, held))
    assert any("another fleet run (pid " in line for line in second_err), second_err

    # Each account checked once: the first run's round is the two it planned, the second run's the
    # account added since (it waited for the first round to end).
    def checked(text: str) -> list[str]:
        return sorted(line.split()[0] for line in text.splitlines() if "@lab.test" in line.split(" ")[0])

    assert checked(started + rest) == ["alice@lab.test", "held@lab.test"]
    assert checked(second_out) == ["bob@lab.test"]
    assert connections == 1
    per_round, all_rounds = asyncio.run(_reports_per_round(fleet_db))
    assert set(per_round.values()) == {1}
    assert len(all_rounds) == 2 and all(r.finished_at is not None for r in all_rounds)
    assert sorted(Counter(round_id for round_id, _ in per_round).values()) == [1, 2]


def test_a_store_that_fails_mid_run_stops_it_and_only_what_was_committed_counted(tmp_path: Path) -> None:
    """A check hands its report to the writer and goes on; when the store fails, the run stops with
    the database's reason (no traceback, no hang), and the accounts it printed are exactly those
    whose reports were committed. Run again once the store works, it finishes the same round."""
    import sqlite3

    db_path = tmp_path / "fleet.db"
    db = f"sqlite:///{db_path}"
    count = 400
    env = _env(new_key_text(), db)
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(count)])
    inboxcheck = [sys.executable, "-m", "inboxcheck", "fleet"]
    added = subprocess.run(
        [*inboxcheck, "add", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert added.returncode == 0, added.stderr
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER full BEFORE INSERT ON reports WHEN (SELECT count(*) FROM reports) >= 50 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    run = [*inboxcheck, "run", "--only", "account"]
    failed = subprocess.run(run, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert failed.returncode not in (0, 1, 3), failed.stderr
    assert "database or disk is full" in failed.stderr and "Traceback" not in failed.stderr
    printed = [line for line in failed.stdout.splitlines() if "@example.test" in line]
    per_round, _ = asyncio.run(_reports_per_round(db))
    # However the reports fell into groups (a group of more than 50 fails whole), none printed
    # is missing from the store and none stored is unprinted.
    assert len(per_round) < count
    stored = {f"user{account - 1}@example.test" for _, account in per_round}
    assert {line.split()[0] for line in printed} == stored and len(printed) == len(stored)
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER full")
    again = subprocess.run([*run, "-q"], env=env, capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0, again.stderr
    per_round, all_rounds = asyncio.run(_reports_per_round(db))
    assert len(all_rounds) == 1 and all_rounds[0].finished_at is not None
    assert set(per_round.values()) == {1} and len(per_round) == count
