"""``fleet run`` as users run it: a real subprocess killed with SIGKILL, then run again."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from inboxcheck.fleet._crypto import new_key_text
from inboxcheck.fleet._db import connect
from inboxcheck.fleet._schema import reports, rounds
from tests.helpers import CANARY, batch_user, write_jsonl


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
