"""Benchmark: the fleet's job queue (Procrastinate) with instant checks, 1 and 2 worker processes.

    python bench/queue_bench.py [--accounts 2000] [--workers 1,2] [--concurrency 20]

What it does (see bench/README.md, "Queue"):

1. A throwaway PostgreSQL cluster (as bench/fleet_bench.py starts it), ``fleet migrate`` and
   ``fleet migrate-queue``, and ``--accounts`` accounts added with ``fleet add``.
2. For each worker count: that many ``fleet worker --only account`` processes are started and
   waited for (registered in the queue), then ``fleet schedule --all`` is timed, then the time until
   the round is closed. ``--only account`` checks the payload only (no network): what is measured
   is the queue's own cost per account (a job taken, the account decrypted, its report recorded
   with its round, the job closed), not a check.
3. The same accounts through the in-process ``fleet run --all --only account``, for comparison.

Figures to stdout and bench/results/queue.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.fleet_bench import postgres_cluster
from inboxcheck.fleet._crypto import new_key_text
from tests.helpers import batch_user, write_jsonl

HERE = Path(__file__).resolve().parent
FLEET = [sys.executable, "-m", "inboxcheck", "fleet"]


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*FLEET, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _one(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    return row[0] if row else None


def _queue_round(url: str, env: dict[str, str], workers: int, concurrency: int) -> dict[str, float]:
    procs = [
        subprocess.Popen(
            [*FLEET, "worker", "--only", "account", "-q", "--concurrency", str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while _one(url, "SELECT count(*) FROM procrastinate_workers") < workers:
            time.sleep(0.1)
        start = time.perf_counter()
        scheduled = _run(["schedule", "--all"], env)
        while _one(url, "SELECT count(*) FROM rounds WHERE finished_at IS NULL") != 0:
            time.sleep(0.05)
        total = time.perf_counter() - start
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
    return {"schedule_s": scheduled, "round_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, Any] = {"accounts": args.accounts, "concurrency": args.concurrency, "queue": {}}
    with postgres_cluster() as url:
        env = {**os.environ, "INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": url}
        _run(["migrate"], env)
        _run(["migrate-queue"], env)
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"queue-bench-{os.getpid()}.jsonl"
        write_jsonl(work, [batch_user(i) for i in range(args.accounts)])
        try:
            _run(["add", str(work)], env)
        finally:
            work.unlink()
        for workers in (int(n) for n in args.workers.split(",")):
            figures = _queue_round(url, env, workers, args.concurrency)
            figures["jobs_per_s"] = args.accounts / figures["round_s"]
            results["queue"][str(workers)] = figures
            print(
                f"{workers} worker(s): schedule {figures['schedule_s']:.1f} s,"
                f" round {figures['round_s']:.1f} s, {figures['jobs_per_s']:.0f} jobs/s",
                flush=True,
            )
        in_process = _run(["run", "--all", "--only", "account", "-q"], env)
        results["fleet_run_s"] = in_process
        results["fleet_run_per_s"] = args.accounts / in_process
        print(f"fleet run (in process): {in_process:.1f} s, {args.accounts / in_process:.0f} accounts/s")
    out = HERE / "results" / "queue.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
