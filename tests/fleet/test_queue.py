"""The fleet on the job queue (Procrastinate) against a real PostgreSQL and real worker processes.

A job holds ids only; one job per account per round however often the round is scheduled; workers
check lab accounts and record one report each; SIGTERM exits 0 and puts the running checks back;
workers SIGKILLed at random moments: every account still ends each round with exactly one report.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from inboxcheck.fleet._crypto import new_key_text
from lab.postgres import Postgres, throwaway_postgres
from tests.fleet.conftest import _create_database
from tests.fleet.receiver import SECRET, Receiver
from tests.helpers import CANARY, batch_user, write_jsonl

INBOXCHECK = [sys.executable, "-m", "inboxcheck", "fleet"]


def _queue_database(server: Postgres) -> str:
    url = server.url(_create_database(server))
    for step in ("migrate", "migrate-queue"):
        done = subprocess.run([*INBOXCHECK, step, "--db", url], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return url


@pytest.fixture
def queue_db(postgres: Postgres) -> str:
    """A new PostgreSQL database with the fleet's schema and the queue's."""
    return _queue_database(postgres)


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A cluster of the test's own, which it stops and starts again (the session's cluster stays up)."""
    with throwaway_postgres(prefix="inboxcheck-pg-restart-") as server:
        yield server


def _fleet(args: list[str], env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*INBOXCHECK, *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == code, done.stdout + done.stderr
    assert CANARY not in done.stdout + done.stderr
    return done


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(query.encode()).fetchall())


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": url}


def test_a_job_holds_ids_only_and_a_round_queues_each_account_once(queue_db: str, tmp_path: Path) -> None:
    env = _env(queue_db)
    accounts = [batch_user(i) for i in range(5)]
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)

    first = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)
    assert (first["queued"], first["already"], first["resumed"]) == (5, 0, False)
    again = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)
    assert (again["round_id"], again["queued"], again["already"], again["resumed"]) == (
        first["round_id"],
        0,
        5,
        True,
    )

    jobs = _rows(queue_db, "SELECT args, lock, queueing_lock, status::text FROM procrastinate_jobs")
    assert len(jobs) == 5
    assert {status for *_, status in jobs} == {"todo"}
    ids = {row[0] for row in _rows(queue_db, "SELECT id FROM accounts")}
    assert sorted(args["account_id"] for args, *_ in jobs) == sorted(ids)
    for args, lock, queueing_lock, _ in jobs:
        assert set(args) == {"account_id", "round_id"} and args["round_id"] == first["round_id"]
        assert lock.startswith("mailbox:") and queueing_lock.startswith("round:")
    assert len({lock for _, lock, _, _ in jobs}) == 5, "one lock per mailbox"
    # Nothing of an account is in the queue's tables but its id: no password, no address.
    dump = json.dumps(_rows(queue_db, "SELECT to_jsonb(j)::text FROM procrastinate_jobs j"))
    assert CANARY not in dump and "example.test" not in dump and "user0" not in dump


def test_the_queue_refuses_a_sqlite_fleet_and_a_database_without_its_schema(
    postgres: Postgres, tmp_path: Path
) -> None:
    env = _env(f"sqlite:///{tmp_path / 'fleet.db'}")
    refused = _fleet(["schedule"], env, code=2)
    assert "PostgreSQL" in refused.stderr and "fleet run" in refused.stderr
    env = _env(postgres.url(_create_database(postgres)))
    _fleet(["migrate"], env)
    missing = _fleet(["worker"], env, code=2)
    assert "migrate-queue" in missing.stderr and "Traceback" not in missing.stderr
    _fleet(["migrate-queue"], env)
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(1)]))], env)
    # A worker with another key would fail every job: it does not start.
    wrong = _fleet(["worker"], {**env, "INBOXCHECK_FLEET_KEY": new_key_text()}, code=2)
    assert "user1@example.test" in wrong.stderr and "does not open" in wrong.stderr


def _round_state(url: str) -> tuple[Counter[tuple[int, int]], list[tuple[Any, ...]]]:
    per = Counter((int(r), int(a)) for r, a in _rows(url, "SELECT round_id, account_id FROM reports"))
    return per, _rows(url, "SELECT id, planned, finished_at FROM rounds ORDER BY id")


def _wait_for(what: str, ready: Any, workers: _Workers, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s: {workers.logs()[-3000:]}"
        assert all(proc.poll() is None for proc in workers.running), workers.logs()[-3000:]
        time.sleep(0.25)


class _Workers:
    """Worker processes of one test, every one of them ended when it ends."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, url: str) -> None:
        self.args, self.env, self.log_dir, self.url = args, env, log_dir, url
        self.started: list[subprocess.Popen[bytes]] = []
        # The workers expected to run (not those this test stopped or killed).
        self.running: list[subprocess.Popen[bytes]] = []
        # Each process's id in the queue (procrastinate_workers), once it has registered.
        self.queue_ids: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        before = {row[0] for row in _rows(self.url, "SELECT id FROM procrastinate_workers")}
        log = (self.log_dir / f"worker{len(self.started)}.log").open("wb")
        proc = subprocess.Popen(
            [*INBOXCHECK, "worker", *self.args, *extra], env=self.env, stdout=log, stderr=log
        )
        log.close()
        self.started.append(proc)
        self.running.append(proc)
        # Started one at a time: the new row in the queue's workers is this process.
        new: set[int] = set()

        def registered() -> bool:
            rows = _rows(self.url, "SELECT id FROM procrastinate_workers")
            new.update(row[0] for row in rows if row[0] not in before)
            return bool(new)

        _wait_for("registered", registered, self)
        self.queue_ids[min(new)] = proc
        return proc

    def busy(self) -> list[subprocess.Popen[bytes]]:
        """The running workers with a check in flight now."""
        holders = {
            row[0]
            for row in _rows(self.url, "SELECT worker_id FROM procrastinate_jobs WHERE status = 'doing'")
        }
        return [
            self.queue_ids[i] for i in holders if i in self.queue_ids and self.queue_ids[i] in self.running
        ]

    def stop(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        self.running.remove(proc)
        proc.send_signal(sig)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("worker*.log")))

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def workers_dir(tmp_path: Path) -> Path:
    path = tmp_path / "workers"
    path.mkdir()
    return path


def _lab_check_args(lab: Any) -> list[str]:
    host, port = lab.nameserver
    return ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file), "--timeout", "10", "-q"]


@pytest.mark.lab
def test_worker_processes_check_lab_accounts_and_sigterm_puts_running_checks_back(
    lab: Any, queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    env = _env(queue_db)
    accounts = [lab.account("alice"), lab.account("bob")]
    # More accounts than one worker checks at once, on the same lab mailboxes under other addresses.
    accounts += [lab.account("alice") | {"email_address": f"alice+q{i}@lab.test"} for i in range(6)]
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)
    _fleet(["schedule"], env)
    args = ["--concurrency", "2", "--graceful", "0", *_lab_check_args(lab)]
    workers = _Workers(args, env, workers_dir, queue_db)
    try:
        first = workers.start()
        # SIGTERM while checks run: no new job is taken, the running ones go back on the queue.
        _wait_for(
            "running a check",
            lambda: (
                _rows(queue_db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")[0][0] > 0
            ),
            workers,
        )
        workers.stop(first, signal.SIGTERM)
        assert first.wait(timeout=60) == 0, workers.logs()

        second = workers.start()
        _wait_for("finished", lambda: _round_state(queue_db)[1][-1][2] is not None, workers)
        workers.stop(second, signal.SIGTERM)
        assert second.wait(timeout=60) == 0, workers.logs()
    finally:
        workers.close()
    per, rounds = _round_state(queue_db)
    assert len(rounds) == 1 and set(per.values()) == {1} and len(per) == len(accounts)
    verdicts = dict(_rows(queue_db, "SELECT address, state FROM accounts"))
    assert verdicts["alice@lab.test"] in ("pass", "warn"), (verdicts, workers.logs())
    assert verdicts["bob@lab.test"] in ("pass", "warn"), verdicts
    statuses = dict(_rows(queue_db, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"))
    assert statuses == {"succeeded": len(accounts)}, statuses
    # Seven accounts log in to alice's mailbox: one lock, so never two of them at once.
    [(locks,)] = _rows(queue_db, "SELECT count(DISTINCT lock) FROM procrastinate_jobs")
    assert locks == 2
    assert CANARY not in workers.logs()
    # Nothing went wrong on the way (a LISTEN connection that fails leaves the workers polling).
    assert "Traceback" not in workers.logs() and "error" not in workers.logs(), workers.logs()[-3000:]
    shown = _fleet(["queue"], env).stdout
    assert f"{len(accounts)} done" in shown


@pytest.mark.lab
@pytest.mark.slow
def test_workers_sigkilled_at_random_moments_leave_one_report_per_account_per_round(
    lab: Any, queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    env = _env(queue_db)
    # Three mailboxes (the lab's users), ten accounts each: at most three checks at once in all.
    users = ("alice@lab.test", "bob@lab.test", "carol@unsigned.test")
    accounts = [
        lab.account(users[i % 3]) | {"email_address": users[i % 3].replace("@", f"+k{i}@")} for i in range(30)
    ]
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)
    args = ["--concurrency", "3", "--stalled-after", "3", "--graceful", "5", *_lab_check_args(lab)]
    workers = _Workers(args, env, workers_dir, queue_db)
    rng = random.Random(20261207)
    kills = 0
    try:
        _fleet(["schedule", "--all"], env)
        for _ in range(3):
            workers.start()
        deadline = time.monotonic() + 600
        while kills < 12:
            assert time.monotonic() < deadline, f"{kills} kills in the time allowed"
            time.sleep(rng.uniform(0.2, 1.5))
            # A random moment, and a worker with a check in flight at that moment.
            busy = workers.busy()
            if not busy:
                _, rounds = _round_state(queue_db)
                if rounds[-1][2] is not None:
                    _fleet(["schedule", "--all"], env)
                continue
            victim = busy[rng.randrange(len(busy))]
            workers.stop(victim, signal.SIGKILL)
            victim.wait(timeout=30)
            kills += 1
            workers.start()
            _, rounds = _round_state(queue_db)
            if rounds[-1][2] is not None:
                # The round ended between kills: a new one keeps the workers busy.
                _fleet(["schedule", "--all"], env)
        _wait_for("finished", lambda: _round_state(queue_db)[1][-1][2] is not None, workers, timeout=300)
        running = list(workers.running)
        for proc in running:
            workers.stop(proc, signal.SIGTERM)
        for proc in running:
            assert proc.wait(timeout=60) == 0, workers.logs()
    finally:
        workers.close()
    per, rounds = _round_state(queue_db)
    logs = workers.logs()
    recovered = logs.count("of a stalled worker put back on the queue")
    print(f"{kills} kills, {len(rounds)} rounds, {recovered} jobs recovered from killed workers")
    # Every kill stopped a check in flight: its job was taken again.
    assert recovered >= 1, logs[-3000:]
    assert set(per.values()) == {1}, [k for k, n in per.items() if n > 1]
    for round_id, planned, finished_at in rounds:
        assert finished_at is not None
        assert sum(1 for r, _ in per if r == round_id) == planned == len(accounts)
    assert CANARY not in logs


def test_schedule_is_safe_against_two_schedulers_at_once(queue_db: str, tmp_path: Path) -> None:
    env = _env(queue_db)
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(40)]))], env)

    async def both() -> list[int]:
        procs = [
            await asyncio.create_subprocess_exec(
                *INBOXCHECK, "schedule", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(2)
        ]
        return [await p.wait() for p in procs]

    assert asyncio.run(both()) == [0, 0]
    counts = _rows(queue_db, "SELECT args->>'account_id', count(*) FROM procrastinate_jobs GROUP BY 1")
    assert len(counts) == 40 and {n for _, n in counts} == {1}


def test_schedule_counts_stay_exact_when_another_hand_queues_a_job_of_its_chunk(
    queue_db: str, tmp_path: Path
) -> None:
    # Jobs go in by chunks, one INSERT each; a job queued meanwhile by another hand (not holding
    # the scheduler's lock) makes the chunk's INSERT fail whole: the chunk is then queued one by one.
    env = _env(queue_db)
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(5)]))], env)
    round_id = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)["round_id"]
    raced = min(row[0] for row in _rows(queue_db, "SELECT id FROM accounts"))
    with psycopg.connect(queue_db) as conn:
        conn.execute(b"DELETE FROM procrastinate_jobs")
        conn.commit()
        # The other hand's job, not committed yet: schedule does not see it, and its INSERT
        # waits on the queueing lock's unique index until this transaction ends.
        conn.execute(
            b"INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, args)"
            b" VALUES ('inboxcheck-fleet', 'inboxcheck.fleet.check_account', %s, %s)",
            (f"round:{round_id}:account:{raced}", json.dumps({"account_id": raced, "round_id": round_id})),
        )
        proc = subprocess.Popen(
            [*INBOXCHECK, "schedule", "--format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%procrastinate_defer_jobs%'"
            )
            while _rows(queue_db, waiting)[0][0] == 0:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "schedule never reached its INSERT"
                time.sleep(0.1)
        except BaseException:
            proc.kill()
            raise
        conn.commit()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert (summary["round_id"], summary["queued"], summary["already"]) == (round_id, 4, 1)
    counts = _rows(queue_db, "SELECT args->>'account_id', count(*) FROM procrastinate_jobs GROUP BY 1")
    assert len(counts) == 5 and {n for _, n in counts} == {1}


def test_workers_with_schedule_queue_due_accounts_once_per_tick_and_one_round_at_a_time(
    queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    env = _env(queue_db)
    accounts = [batch_user(i) for i in range(6)]
    _fleet(["add", "--interval", "24h", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)
    # Two schedulers (offline checks: the payload only); each tick is deferred once in all.
    args = ["--schedule", "--schedule-every", "1", "--only", "account", "-q"]
    workers = _Workers(args, env, workers_dir, queue_db)
    try:
        for _ in range(2):
            workers.start()
        _wait_for(
            "a finished round", lambda: any(r[2] is not None for r in _round_state(queue_db)[1]), workers
        )
        ticks_query = (
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE task_name = 'inboxcheck.fleet.schedule' AND status = 'succeeded'"
        )
        before = _rows(queue_db, ticks_query)[0][0]
        _wait_for("three more ticks", lambda: _rows(queue_db, ticks_query)[0][0] >= before + 3, workers)
        running = list(workers.running)
        for proc in running:
            workers.stop(proc, signal.SIGTERM)
        for proc in running:
            assert proc.wait(timeout=60) == 0, workers.logs()
    finally:
        workers.close()
    per, rounds = _round_state(queue_db)
    # The accounts fell due once (then in 24 h): one round, one report each, however many ticks.
    assert len(rounds) == 1 and rounds[0][2] is not None
    assert set(per.values()) == {1} and len(per) == len(accounts)
    ticks = _rows(
        queue_db,
        "SELECT args->>'timestamp', count(*) FROM procrastinate_jobs"
        " WHERE task_name = 'inboxcheck.fleet.schedule' GROUP BY 1",
    )
    assert len(ticks) >= 3 and {n for _, n in ticks} == {1}, ticks
    assert "Traceback" not in workers.logs(), workers.logs()[-3000:]


def test_prune_deletes_the_queues_finished_jobs_and_never_a_waiting_one(
    queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    # Procrastinate keeps every finished job (one per account per round): `fleet prune` deletes them.
    env = _env(queue_db)
    _fleet(["add", str(write_jsonl(tmp_path / "a.jsonl", [batch_user(i) for i in range(3)]))], env)
    _fleet(["schedule"], env)
    workers = _Workers(["--only", "account", "-q"], env, workers_dir, queue_db)
    try:
        proc = workers.start()
        _wait_for(
            "a finished round", lambda: all(r[2] is not None for r in _round_state(queue_db)[1]), workers
        )
        workers.stop(proc, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, workers.logs()
    finally:
        workers.close()
    # A second round, queued and not taken: its jobs wait.
    _fleet(["add", str(write_jsonl(tmp_path / "b.jsonl", [batch_user(i) for i in range(3, 5)]))], env)
    _fleet(["schedule"], env)
    status = "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1 ORDER BY 1"
    assert _rows(queue_db, status) == [("succeeded", 3), ("todo", 2)]

    kept = _fleet(["prune", "--keep-days", "1"], env)
    assert "0 finished job(s)" in kept.stderr and _rows(queue_db, status) == [("succeeded", 3), ("todo", 2)]
    pruned = _fleet(["prune", "--keep-days", "0"], env)
    assert "3 finished job(s)" in pruned.stderr, pruned.stderr
    assert _rows(queue_db, status) == [("todo", 2)]
    assert _rows(queue_db, "SELECT count(*) FROM procrastinate_events")[0][0] == 2


def test_the_cli_loads_procrastinate_only_when_a_queue_command_runs() -> None:
    probe = "import sys, inboxcheck.cli, inboxcheck.cli.fleet; print('procrastinate' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _said(workers: _Workers, proc: subprocess.Popen[bytes], text: str) -> bool:
    """Whether ``proc``'s own log holds ``text``."""
    index = workers.started.index(proc)
    return text in (workers.log_dir / f"worker{index}.log").read_text(errors="replace")


LOST = "the queue's database is unreachable"
BACK = "connected to the queue's database again"


@pytest.mark.lab
@pytest.mark.slow
def test_a_database_restart_during_a_round_workers_reconnect_and_nothing_is_recorded_twice(
    lab: Any, own_postgres: Postgres, tmp_path: Path, workers_dir: Path
) -> None:
    url = _queue_database(own_postgres)
    env = _env(url)
    # Ninety accounts on three mailboxes, two checks at once in all: the round lasts seconds however
    # fast the lab answers (a lab check can take 0.1 s: 24 accounts were done between two looks).
    users = ("alice@lab.test", "bob@lab.test", "carol@unsigned.test")
    accounts = [
        lab.account(users[i % 3]) | {"email_address": users[i % 3].replace("@", f"+r{i}@")} for i in range(90)
    ]
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)
    args = ["--concurrency", "1", "--stalled-after", "3", "--graceful", "2", *_lab_check_args(lab)]
    workers = _Workers(args, env, workers_dir, url)
    try:
        pair = [workers.start() for _ in range(2)]
        # Queued once both workers listen: neither has raced through the round while the other started.
        _fleet(["schedule"], env)
        # Mid-round: reports recorded, and many accounts still to check (jobs waiting or running).
        _wait_for("mid-round", lambda: 2 <= len(_round_state(url)[0]) <= len(accounts) - 30, workers)
        own_postgres.stop("fast")
        # Both workers see the database gone, and stay up (the old worker exited with an error).
        _wait_for("told the database is lost", lambda: all(_said(workers, p, LOST) for p in pair), workers)
        own_postgres.start()
        _wait_for("finished", lambda: _round_state(url)[1][-1][2] is not None, workers, timeout=300)
        _wait_for("connected again", lambda: all(_said(workers, p, BACK) for p in pair), workers)
        # No job left running: those of the lost connections are taken again (the round may have
        # closed before, once every report was in), and find their report.
        pending = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        _wait_for("every job done", lambda: _rows(url, pending)[0][0] == 0, workers)
        for proc in pair:
            workers.stop(proc, signal.SIGTERM)
        for proc in pair:
            assert proc.wait(timeout=60) == 0, workers.logs()[-3000:]
    finally:
        workers.close()
        # The cluster may have been left stopped by a failure above: its fixture removes it either way.
    per, rounds = _round_state(url)
    logs = workers.logs()
    assert len(rounds) == 1 and rounds[0][2] is not None and rounds[0][1] == len(accounts)
    # One report per account: none lost, none twice.
    assert len(per) == len(accounts) and set(per.values()) == {1}, per
    # Every job succeeded in the end (a job whose writes failed was retried), none failed.
    statuses = dict(_rows(url, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"))
    assert statuses == {"succeeded": len(accounts)}, (statuses, logs[-3000:])
    # The checks themselves were not disturbed: each mailbox has one verdict across its accounts.
    verdicts: dict[str, set[str]] = {}
    query = "SELECT a.address, r.verdict FROM accounts a JOIN reports r ON r.account_id = a.id"
    for address, verdict in _rows(url, query):
        verdicts.setdefault(address.split("+")[0], set()).add(verdict)
    assert verdicts["alice"] <= {"pass", "warn"} and verdicts["bob"] <= {"pass", "warn"}, verdicts
    assert all(len(seen) == 1 for seen in verdicts.values()), verdicts
    # One clear line for the lost database, not Procrastinate's tracebacks of it.
    assert "Traceback" not in logs, logs[-3000:]
    assert CANARY not in logs


@pytest.mark.slow
def test_a_worker_exits_0_on_sigterm_while_its_database_is_down(
    own_postgres: Postgres, tmp_path: Path, workers_dir: Path
) -> None:
    url = _queue_database(own_postgres)
    env = _env(url)
    workers = _Workers(["--graceful", "1", "-q"], env, workers_dir, url)
    try:
        unaware, waiting = workers.start(), workers.start()
        own_postgres.stop("immediate")
        # One stopped before it noticed (inside Procrastinate's worker), one while it waits to reconnect.
        workers.stop(unaware, signal.SIGTERM)
        _wait_for("told the database is lost", lambda: _said(workers, waiting, LOST), workers)
        workers.stop(waiting, signal.SIGTERM)
        for proc in (unaware, waiting):
            assert proc.wait(timeout=60) == 0, workers.logs()[-3000:]
    finally:
        workers.close()
    assert "Traceback" not in workers.logs(), workers.logs()[-3000:]


def test_two_queue_watchers_and_a_worker_one_round_at_a_time_each_account_once_per_round(
    queue_db: str, tmp_path: Path, workers_dir: Path
) -> None:
    env = _env(queue_db)
    accounts = [batch_user(i) for i in range(6)]
    _fleet(["add", "--interval", "24h", str(write_jsonl(tmp_path / "in.jsonl", accounts))], env)
    # Offline checks (the payload only): the scheduling is under test here.
    workers = _Workers(["--only", "account", "-q"], env, workers_dir, queue_db)
    outputs = [tmp_path / f"watch{i}.jsonl" for i in range(2)]
    watchers: list[subprocess.Popen[bytes]] = []

    def ticks(index: int) -> int:
        return len(outputs[index].read_text().splitlines())

    def watched(ready: Any) -> Any:
        def check() -> bool:
            assert all(w.poll() is None for w in watchers), [o.read_text() for o in outputs]
            return bool(ready())

        return check

    def finished(count: int) -> bool:
        rounds = _round_state(queue_db)[1]
        return len(rounds) == count and all(r[2] is not None for r in rounds)

    try:
        for output in outputs:
            with output.open("wb") as out:
                watchers.append(
                    subprocess.Popen(
                        [*INBOXCHECK, "watch", "--queue", "--every", "1", "--format", "json"],
                        env=env,
                        stdout=out,
                        stderr=subprocess.DEVNULL,
                    )
                )
        worker = workers.start()
        _wait_for("a finished round", watched(lambda: finished(1)), workers)
        # Every account falls due again: the next look of either watcher begins one round, not two.
        with psycopg.connect(queue_db) as conn:
            conn.execute(b"UPDATE accounts SET next_due = 0")
        _wait_for("a second finished round", watched(lambda: finished(2)), workers)
        seen = [ticks(i) for i in range(2)]
        _wait_for(
            "three more looks each", watched(lambda: all(ticks(i) >= seen[i] + 3 for i in range(2))), workers
        )
        for watcher in watchers:
            watcher.send_signal(signal.SIGTERM)
        for watcher in watchers:
            assert watcher.wait(timeout=60) == 0
        workers.stop(worker, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, workers.logs()[-3000:]
    finally:
        for watcher in watchers:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(timeout=30)
        workers.close()
    rounds = _rows(queue_db, "SELECT id, started_at, finished_at, planned FROM rounds ORDER BY id")
    assert len(rounds) == 2 and rounds[1][1] >= rounds[0][2], rounds
    assert {planned for *_, planned in rounds} == {len(accounts)}
    per, _ = _round_state(queue_db)
    assert len(per) == 2 * len(accounts) and set(per.values()) == {1}, per
    jobs = _rows(queue_db, "SELECT queueing_lock, count(*) FROM procrastinate_jobs GROUP BY 1")
    assert len(jobs) == 2 * len(accounts) and {n for _, n in jobs} == {1}, jobs
    looks = [json.loads(line) for output in outputs for line in output.read_text().splitlines()]
    assert sum(1 for look in looks if look["round_id"] is not None and not look["resumed"]) == 2, looks
    assert sum(look["queued"] for look in looks) == 2 * len(accounts), looks


def test_watch_queue_refuses_what_goes_without_it(queue_db: str) -> None:
    env = _env(queue_db)
    refused = _fleet(["watch", "--queue", "--webhook", "http://127.0.0.1:9/"], env, code=2)
    assert "fleet webhook add" in refused.stderr
    assert "--queue" in _fleet(["watch", "--every", "5"], env, code=2).stderr
    assert (
        "PostgreSQL"
        in _fleet(["watch", "--queue"], {**env, "INBOXCHECK_FLEET_DB": "sqlite:///x.db"}, code=2).stderr
    )


@pytest.mark.lab
@pytest.mark.slow
def test_a_worker_delivers_one_signed_webhook_when_an_account_breaks_and_a_sweep_resends_it_after_a_kill(
    lab: Any, queue_db: str, tmp_path: Path, workers_dir: Path, receiver: Receiver
) -> None:
    env = {**_env(queue_db), "INBOXCHECK_WEBHOOK_SECRET": SECRET}
    alice, bob = lab.account("alice"), lab.account("bob")
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [alice, bob]))], env)
    _fleet(["webhook", "add", receiver.url], env)
    args = ["--concurrency", "2", "--stalled-after", "3", "--sweep-every", "1", *_lab_check_args(lab)]
    workers = _Workers(args, env, workers_dir, queue_db)

    def round_done(count: int) -> Any:
        return lambda: len(rounds := _round_state(queue_db)[1]) == count and rounds[-1][2] is not None

    def state(address: str) -> str:
        return str(dict(_rows(queue_db, "SELECT address, state FROM accounts"))[address])

    def delivery() -> tuple[Any, ...]:
        [row] = _rows(queue_db, "SELECT status, claimed_by, claimed_until, attempts FROM deliveries")
        return row

    try:
        first = workers.start()
        _fleet(["schedule"], env)
        _wait_for("round 1", round_done(1), workers)
        assert state("bob@lab.test") in ("pass", "warn") and receiver.posts == []
        # The password changes at the provider: one failure is a suspicion, the second breaks it.
        broken = bob | {"smtp_password": "Wrong-pw-4411", "imap_password": "Wrong-pw-4411"}
        _fleet(["add", str(write_jsonl(tmp_path / "broken.jsonl", [broken]))], env)
        _fleet(["schedule", "--all"], env)
        _wait_for("round 2", round_done(2), workers)
        assert state("bob@lab.test") in ("pass", "warn") and receiver.posts == []
        # The receiver takes the POST and answers nothing: the worker is killed mid-delivery, after
        # the report (and its change) was committed.
        receiver.hold = threading.Event()
        _fleet(["schedule", "--all"], env)
        _wait_for("the webhook POSTed", lambda: len(receiver.posts) >= 1, workers)
        workers.stop(first, signal.SIGKILL)
        first.wait(timeout=30)
        receiver.hold.set()
        receiver.hold = None
        # The delivery is left pending, claimed by the killed worker: no sweep takes it while the
        # claim lasts (a couple of minutes, on the database's clock).
        status, claimed_by, claimed_until, _ = delivery()
        assert status == "pending" and f" pid {first.pid} " in claimed_by and claimed_until is not None
        # Another worker takes the job again: it finds the report recorded, and sends nothing.
        workers.start()
        _wait_for("round 3", round_done(3), workers)
        # The round may close before (the other account's job closes it once every report is in):
        # the killed worker's job is taken again all the same.
        pending = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        _wait_for("every job done", lambda: _rows(queue_db, pending)[0][0] == 0, workers)
        # The claim runs out (moved back as if its minutes had passed): the next sweep sends it.
        with psycopg.connect(queue_db) as conn:
            conn.execute(
                b"UPDATE deliveries SET claimed_until = claimed_until - 3600 WHERE status = 'pending'"
            )
        _wait_for("the webhook delivered by a sweep", lambda: delivery()[0] == "delivered", workers)
        running = list(workers.running)
        for proc in running:
            workers.stop(proc, signal.SIGTERM)
        for proc in running:
            assert proc.wait(timeout=60) == 0, workers.logs()[-3000:]
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        workers.close()
    logs = workers.logs()
    assert state("bob@lab.test") == "broken" and state("alice@lab.test") in ("pass", "warn")
    assert "of a stalled worker put back on the queue" in logs, logs[-3000:]
    assert "webhook deliveries left pending: 1 delivered" in logs, logs[-3000:]
    # Two POSTs of one event in all, signed with the fleet's secret: the one cut off by the kill
    # and the sweep's (at least once: the event id is the receiver's key to drop the repeat).
    first_post, second_post = receiver.events()
    assert first_post == second_post
    assert first_post["type"] == "inbox.broken" and first_post["data"]["email_address"] == "bob@lab.test"
    assert delivery() == ("delivered", None, None, 1)
    posted = "".join(body.decode() for _, body in receiver.posts)
    for secret in (alice["smtp_password"], bob["smtp_password"], "Wrong-pw-4411"):
        assert secret not in posted and secret not in logs
    per, _ = _round_state(queue_db)
    assert set(per.values()) == {1} and len(per) == 6
    statuses = dict(_rows(queue_db, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"))
    assert statuses == {"succeeded": 6}, statuses


def test_two_queue_watchers_sweep_the_pending_webhooks_each_sent_once(
    queue_db: str, tmp_path: Path, receiver: Receiver
) -> None:
    from inboxcheck.fleet._db import connect
    from tests.fleet.test_webhooks import _pending

    async def left_pending() -> int:
        engine = await connect(queue_db)
        try:
            return await _pending(engine, receiver, accounts=3, urls=8)
        finally:
            await engine.dispose()

    count = asyncio.run(left_pending())
    with psycopg.connect(queue_db) as conn:
        # Recorded at the tests' fixed time, which is ahead: due now.
        conn.execute(b"UPDATE deliveries SET next_attempt_at = 0")
    env = {**_env(queue_db), "INBOXCHECK_WEBHOOK_SECRET": SECRET}
    outputs = [tmp_path / f"watch{i}.jsonl" for i in range(2)]
    errors = [tmp_path / f"watch{i}.err" for i in range(2)]
    watchers: list[subprocess.Popen[bytes]] = []

    def done() -> bool:
        assert all(w.poll() is None for w in watchers), [e.read_text() for e in errors]
        sent = _rows(queue_db, "SELECT count(*) FROM deliveries WHERE status = 'delivered'")[0][0]
        # Each watcher has looked once at least (it is past its start: SIGTERM is its own to handle).
        return sent == count and all(o.read_text().strip() for o in outputs)

    try:
        for output, error in zip(outputs, errors, strict=True):
            with output.open("wb") as out, error.open("wb") as err:
                watchers.append(
                    subprocess.Popen(
                        [*INBOXCHECK, "watch", "--queue", "--every", "1", "--format", "json"],
                        env=env,
                        stdout=out,
                        stderr=err,
                    )
                )
        deadline = time.monotonic() + 120
        while not done():
            assert time.monotonic() < deadline, [e.read_text() for e in errors]
            time.sleep(0.25)
        for watcher in watchers:
            watcher.send_signal(signal.SIGTERM)
        for watcher in watchers:
            assert watcher.wait(timeout=60) == 0, [e.read_text() for e in errors]
    finally:
        for watcher in watchers:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(timeout=30)
    per = Counter((path, event["id"]) for path, event in zip(receiver.paths, receiver.events(), strict=True))
    assert len(per) == count and set(per.values()) == {1}, per.most_common(3)
    said = "".join(e.read_text() for e in errors)
    assert "webhook deliveries left pending" in said and "Traceback" not in said, said
    assert _rows(queue_db, "SELECT count(*) FROM deliveries WHERE claimed_by IS NOT NULL") == [(0,)]


@pytest.mark.slow
def test_watch_queue_rides_out_a_database_restart(own_postgres: Postgres, tmp_path: Path) -> None:
    url = _queue_database(own_postgres)
    env = _env(url)
    _fleet(["add", "--interval", "24h", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(1)]))], env)
    out, err = tmp_path / "watch.jsonl", tmp_path / "watch.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        watcher = subprocess.Popen(
            [*INBOXCHECK, "watch", "--queue", "--every", "1", "--format", "json"],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )

    def looks() -> int:
        assert watcher.poll() is None, err.read_text()
        return len(out.read_text().splitlines())

    def wait(what: str, ready: Any) -> None:
        deadline = time.monotonic() + 120
        while not ready():
            assert time.monotonic() < deadline, f"not {what}: {err.read_text()}"
            time.sleep(0.25)

    try:
        wait("a look", lambda: looks() >= 1)
        own_postgres.stop("fast")
        wait("told the database is lost", lambda: LOST in err.read_text() and looks() >= 1)
        own_postgres.start()
        before = looks()
        wait("looking again", lambda: looks() >= before + 2)
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=60) == 0, err.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=30)
    first, *_ = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["queued"] == 1
    assert "Traceback" not in err.read_text() and "error connecting" not in err.read_text()
