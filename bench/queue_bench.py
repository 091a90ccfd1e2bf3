"""Benchmark: the fleet's job queue (Procrastinate): schedule, queue overhead, lab checks behind latency.

    python bench/queue_bench.py [--accounts 10000] [--workers 1,2] [--concurrency 20]
    python bench/queue_bench.py --schedule-sizes 2000,10000 [--baseline-src DIR] [--repeats 2]
    python bench/queue_bench.py --lab 2000 [--lab-workers 1,2,4] [--lab-concurrency 5] [--delay 20]

What it does (see bench/README.md, "Queue"); every part on a throwaway PostgreSQL cluster (as
bench/fleet_bench.py starts it), ``fleet migrate`` and ``fleet migrate-queue``:

1. Queue overhead (the default): ``--accounts`` accounts added with ``fleet add``; for each worker
   count, that many ``fleet worker --only account`` processes are started and waited for
   (registered in the queue), then the time from ``fleet schedule --all`` to the round's close.
   ``--only account`` checks the payload only (no network): what is measured is the queue's own
   cost per account (a job taken, the account decrypted, its report recorded with its round, the
   job closed), not a check. Then the same accounts through the in-process ``fleet run --all``.
2. ``--schedule-sizes``: ``fleet schedule --all`` alone, timed for each size (accounts added up to
   it; the jobs and the round deleted between two timings). With ``--baseline-src DIR`` (a copy of
   an older ``inboxcheck`` package, e.g. ``git archive OLD inboxcheck | tar -x -C DIR``) the older
   code is timed too, alternating with this one, on the same database.
3. ``--lab N``: N accounts of the lab (real Postfix and Dovecot), reached through
   concurrency_bench's delaying proxy (``--delay`` ms each way, DNS included), checked for real
   (SMTP and IMAP logins) by 1, 2, 4 ``fleet worker`` processes of ``--lab-concurrency`` each;
   beside them, in the same run, the in-process ``fleet run --all`` with the concurrency of one
   worker and of the most workers, and the time of one account's check alone.

Figures to stdout and bench/results/queue*.json, each with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench._batch_methods import proc_stat as _proc_stat
from bench.fleet_bench import postgres_cluster
from inboxcheck.fleet._crypto import new_key_text
from tests.helpers import batch_user, write_jsonl

HERE = Path(__file__).resolve().parent
FLEET = [sys.executable, "-m", "inboxcheck", "fleet"]
TICK = os.sysconf("SC_CLK_TCK")


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [*FLEET, *args], env=env, cwd=cwd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if done.returncode not in (0, 3):
        raise SystemExit(f"fleet {args[0]} failed ({done.returncode}): {done.stderr[-800:].decode()}")
    return time.perf_counter() - start


def _one(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    return row[0] if row else None


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _add(env: dict[str, str], rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmp:
        _run(["add", str(write_jsonl(Path(tmp) / "accounts.jsonl", rows))], env)


def _queue_round(
    url: str,
    env: dict[str, str],
    workers: int,
    concurrency: int,
    check: list[str],
    jobs: int,
    proxy_pid: int | None = None,
) -> dict[str, float]:
    """``workers`` worker processes, one round of every account: its time and the CPU it took
    (the workers', and the delaying proxy's when there is one)."""
    procs = [
        subprocess.Popen(
            [*FLEET, "worker", *check, "-q", "--concurrency", str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while _one(url, "SELECT count(*) FROM procrastinate_workers") < workers:
            time.sleep(0.1)
        cpu0 = sum(_cpu_of(p.pid) for p in procs)
        proxy0 = _cpu_of(proxy_pid) if proxy_pid else 0.0
        busy0, total0 = _proc_stat()
        start = time.perf_counter()
        scheduled = _run(["schedule", "--all"], env)
        while _one(url, "SELECT count(*) FROM rounds WHERE finished_at IS NULL") != 0:
            time.sleep(0.05)
        total = time.perf_counter() - start
        busy1, total1 = _proc_stat()
        worker_cpu = sum(_cpu_of(p.pid) for p in procs) - cpu0
        proxy_cpu = _cpu_of(proxy_pid) - proxy0 if proxy_pid else 0.0
        load = _load()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
    figures = {
        "schedule_s": round(scheduled, 2),
        "round_s": round(total, 2),
        "jobs_per_s": round(jobs / total, 1),
        "worker_cpu_ms_per_job": round(1000 * worker_cpu / jobs, 1),
        "machine_busy": round((busy1 - busy0) / max(1, total1 - total0), 2),
        "load_average": load,
    }
    if proxy_pid:
        figures["proxy_cpu_ms_per_job"] = round(1000 * proxy_cpu / jobs, 1)
        figures["proxy_cpu_share"] = round(proxy_cpu / total, 2)
    return figures


def _queue_size(url: str) -> dict[str, Any]:
    """The queue's tables on disk (jobs and their events, indexes included) per job kept."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"VACUUM ANALYZE procrastinate_jobs, procrastinate_events")
        jobs, events, size = conn.execute(
            b"SELECT (SELECT count(*) FROM procrastinate_jobs), (SELECT count(*) FROM procrastinate_events),"
            b" pg_total_relation_size('procrastinate_jobs') + pg_total_relation_size('procrastinate_events')"
        ).fetchone() or (0, 0, 0)
    return {"jobs": jobs, "events": events, "bytes": size, "bytes_per_job": round(size / max(jobs, 1))}


def _fresh(url: str) -> dict[str, str]:
    env = {**os.environ, "INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": url}
    _run(["migrate"], env)
    _run(["migrate-queue"], env)
    return env


def overhead(accounts: int, workers: list[int], concurrency: int) -> dict[str, Any]:
    results: dict[str, Any] = {"accounts": accounts, "concurrency": concurrency, "queue": {}}
    with postgres_cluster() as url:
        env = _fresh(url)
        _add(env, [batch_user(i) for i in range(accounts)])
        for count in workers:
            figures = _queue_round(url, env, count, concurrency, ["--only", "account"], accounts)
            results["queue"][str(count)] = figures
            print(f"{count} worker(s), instant checks: {figures}", flush=True)
        results["queue_tables"] = _queue_size(url)
        print(f"queue tables: {results['queue_tables']}", flush=True)
        in_process = _run(["run", "--all", "--only", "account", "-q"], env)
        results["fleet_run"] = {
            "seconds": round(in_process, 2),
            "accounts_per_s": round(accounts / in_process, 1),
            "load_average": _load(),
        }
        print(f"fleet run (in process): {results['fleet_run']}", flush=True)
    return results


def schedule_times(sizes: list[int], repeats: int, baseline: Path | None) -> dict[str, Any]:
    variants: list[tuple[str, Path | None]] = [("current", None)]
    if baseline is not None:
        variants.append(("baseline", baseline))
    results: dict[str, Any] = {"sizes": {}}
    with postgres_cluster() as url:
        env = _fresh(url)
        have = 0
        for size in sorted(sizes):
            _add(env, [batch_user(i) for i in range(have, size)])
            have = size
            times: dict[str, list[float]] = {name: [] for name, _ in variants}
            loads: list[float] = []
            for n in range(repeats):
                for name, src in variants if n % 2 == 0 else variants[::-1]:
                    with psycopg.connect(url) as conn:
                        conn.execute(b"DELETE FROM procrastinate_jobs")
                        conn.execute(b"DELETE FROM rounds")
                    run_env = env if src is None else {**env, "PYTHONPATH": str(src)}
                    times[name].append(round(_run(["schedule", "--all"], run_env, cwd=src), 2))
                    queued = _one(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
                    if queued != size:
                        raise SystemExit(f"{name}: {queued} jobs queued for {size} accounts")
                    loads.append(_load())
            results["sizes"][str(size)] = {"seconds": times, "load_average": loads}
            print(f"fleet schedule --all, {size} accounts: {times} (load {loads})", flush=True)
    return results


async def _one_check_times(payloads: list[dict[str, Any]], dns_port: int, ca_file: Path) -> list[float]:
    """One account at a time through the proxy: the wall time of a real check (SMTP and IMAP)."""
    from bench.concurrency_bench import _timed
    from inboxcheck._models import Account
    from inboxcheck._options import CheckOptions, Family, Nameserver

    options = CheckOptions(
        timeout=20, deadline=120, nameservers=(Nameserver(host="127.0.0.1", port=dns_port),), ca_file=ca_file
    )
    families = frozenset({Family.ACCOUNT, Family.SMTP, Family.IMAP})
    return [(await _timed(Account.model_validate(p), options, families))[0] for p in payloads]


def lab_rounds(accounts: int, workers: list[int], concurrency: int, delay_ms: float) -> dict[str, Any]:
    from bench.concurrency_bench import Proxy
    from lab import Lab

    names = [f"q{i}" for i in range(accounts)]
    results: dict[str, Any] = {
        "accounts": accounts,
        "delay_ms_one_way": delay_ms,
        "concurrency_per_worker": concurrency,
        "queue": {},
        "fleet_run": {},
    }
    with Lab(users=names) as lab, postgres_cluster() as url:
        proxy = Proxy(delay_ms, lab)
        try:
            payloads = [
                lab.account(x) | {"smtp_port": proxy.smtp_port, "imap_port": proxy.imap_port} for x in names
            ]
            env = _fresh(url)
            _add(env, payloads)
            check = [
                *("--only", "smtp", "--only", "imap"),
                *("--nameserver", f"127.0.0.1:{proxy.dns_port}", "--ca-file", str(lab.ca_file)),
            ]
            # Warm-up (Dovecot makes each Maildir at the first login), not timed.
            _run(["run", "--all", *check, "--concurrency", "40", "--per-host", "40", "-q"], env)
            singles = asyncio.run(_one_check_times(payloads[:15], proxy.dns_port, lab.ca_file))
            results["one_check_s"] = {
                "median": round(statistics.median(singles), 3),
                "min": round(min(singles), 3),
                "max": round(max(singles), 3),
            }
            print(f"one check alone through the proxy: {results['one_check_s']}", flush=True)
            in_process = sorted({concurrency, concurrency * max(workers)})
            for count in workers:
                figures = _queue_round(url, env, count, concurrency, check, accounts, proxy.process.pid)
                results["queue"][str(count)] = figures
                print(f"{count} worker(s) x {concurrency}: {figures}", flush=True)
            for at_once in in_process:
                busy0, total0 = _proc_stat()
                proxy0 = _cpu_of(proxy.process.pid)
                seconds = _run(
                    ["run", "--all", *check, "--concurrency", str(at_once), "--per-host", str(at_once), "-q"],
                    env,
                )
                busy1, total1 = _proc_stat()
                proxy_cpu = _cpu_of(proxy.process.pid) - proxy0
                results["fleet_run"][str(at_once)] = {
                    "seconds": round(seconds, 2),
                    "accounts_per_s": round(accounts / seconds, 1),
                    "machine_busy": round((busy1 - busy0) / max(1, total1 - total0), 2),
                    "proxy_cpu_share": round(proxy_cpu / seconds, 2),
                    "load_average": _load(),
                }
                print(f"fleet run --concurrency {at_once}: {results['fleet_run'][str(at_once)]}", flush=True)
            results["queue_tables"] = _queue_size(url)
            reports = _one(url, "SELECT count(*) FROM reports")
            verdicts = _one(url, "SELECT count(*) FROM reports WHERE verdict <> 'pass'")
            results["reports"] = {"total": reports, "not_pass": verdicts}
        finally:
            proxy.close()
    base = results["queue"].get("1")
    if base:
        results["scaling"] = {
            n: round(f["jobs_per_s"] / base["jobs_per_s"], 2) for n, f in results["queue"].items()
        }
        print(f"scaling against 1 worker: {results['scaling']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--schedule-sizes", help="time `fleet schedule --all` alone at these sizes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, help="an older inboxcheck package's parent directory")
    parser.add_argument("--lab", type=int, help="this many lab accounts behind the delaying proxy")
    parser.add_argument("--lab-workers", default="1,2,4")
    parser.add_argument("--lab-concurrency", type=int, default=5)
    parser.add_argument("--delay", type=float, default=20.0, help="ms each way")
    args = parser.parse_args()
    if args.schedule_sizes:
        sizes = [int(n) for n in args.schedule_sizes.split(",")]
        results, name = schedule_times(sizes, args.repeats, args.baseline_src), "queue-schedule.json"
    elif args.lab:
        workers = [int(n) for n in args.lab_workers.split(",")]
        results, name = lab_rounds(args.lab, workers, args.lab_concurrency, args.delay), "queue-lab.json"
    else:
        workers = [int(n) for n in args.workers.split(",")]
        results, name = overhead(args.accounts, workers, args.concurrency), "queue.json"
    results["cpus"] = os.cpu_count()
    out = HERE / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
