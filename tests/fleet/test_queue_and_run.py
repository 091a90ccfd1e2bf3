"""A PostgreSQL fleet checked through the queue is never also run in process, and the other way
round: either would take the same round and log in to its accounts a second time.

Real ``inboxcheck fleet`` processes against a throwaway PostgreSQL cluster; the accounts are
checked with ``--only account`` (no network), since what is tested is who may take the round.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from inboxcheck.fleet._runlock import PG_LOCK
from tests.fleet.test_queue import _env, _fleet, _rows, queue_db as queue_db
from tests.helpers import batch_user, write_jsonl


def test_a_run_refuses_a_fleet_whose_round_is_on_the_queue(queue_db: str, tmp_path: Path) -> None:
    env = _env(queue_db)
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(4)]))], env)
    scheduled = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)
    assert scheduled["queued"] == 4 and scheduled["run_busy"] is False

    # `fleet status` shows the round's jobs and the workers, in text and JSON.
    status = json.loads(_fleet(["status", "--format", "json"], env).stdout)
    round_id = str(scheduled["round_id"])
    assert status["queue"] == {"rounds": {round_id: {"todo": 4}}, "workers": 0}
    assert len(status["accounts"]) == 4
    text = _fleet(["status"], env).stdout
    assert f"round {round_id}: 4 queued" in text and "workers seen in the last minute: 0" in text

    for command in (["run", "--all", "--only", "account"], ["watch", "--only", "account"]):
        refused = _fleet(command, env, code=2)
        assert "on the queue (4 jobs waiting or running)" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    # Nothing was checked in process: no report, the four jobs still waiting for the workers.
    assert _rows(queue_db, "SELECT count(*) FROM reports") == [(0,)]
    jobs = _rows(queue_db, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1")
    assert jobs == [("todo", 4)]


def test_schedule_queues_nothing_while_a_run_checks_the_fleet(queue_db: str, tmp_path: Path) -> None:
    env = _env(queue_db)
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(3)]))], env)
    # The lock a `fleet run` holds for its round (here held by the test's own session).
    with psycopg.connect(queue_db, autocommit=True) as run:
        run.execute(b"SELECT pg_advisory_lock(%s)", (PG_LOCK,))
        busy = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)
        assert busy["run_busy"] is True and busy["queued"] == 0 and busy["round_id"] is None
        text = _fleet(["schedule"], env)
        assert "is checking this fleet's round: nothing queued" in text.stderr
        assert _rows(queue_db, "SELECT count(*) FROM procrastinate_jobs") == [(0,)]
        assert _rows(queue_db, "SELECT count(*) FROM rounds") == [(0,)]
    # The run is over: the round goes on the queue.
    done = json.loads(_fleet(["schedule", "--format", "json"], env).stdout)
    assert done["queued"] == 3 and done["run_busy"] is False


def test_a_pace_group_goes_with_a_postgresql_fleet(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path / 'fleet.db'}")
    _fleet(["add", str(write_jsonl(tmp_path / "in.jsonl", [batch_user(1)]))], env)
    # No queue on SQLite: the status is the accounts alone.
    assert set(json.loads(_fleet(["status", "--format", "json"], env).stdout)) == {"accounts"}
    for command in (["run", "--only", "account"], ["watch", "--only", "account"]):
        refused = _fleet([*command, "--pace-group", "203.0.113.7"], env, code=2)
        assert "--pace-group" in refused.stderr and "PostgreSQL" in refused.stderr
        assert "Traceback" not in refused.stderr
    from_env = _fleet(["run", "--only", "account"], {**env, "INBOXCHECK_PACE_GROUP": "edge-1"}, code=2)
    assert "INBOXCHECK_PACE_GROUP" in from_env.stderr
    bad = _fleet(["run", "--pace-group", " spaced "], env, code=2)
    assert "--pace-group" in bad.stderr
