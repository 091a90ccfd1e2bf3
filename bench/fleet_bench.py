"""Benchmark: ``fleet status`` and ``fleet changes`` over a large synthetic fleet, SQLite and PostgreSQL.

    python bench/fleet_bench.py [--accounts 100000] [--reports 30] [--runs 7] [--backends sqlite,postgresql]
    python bench/fleet_bench.py --vs-batch 200 [--rounds 3] [--concurrency 20]

What it does (see bench/README.md, "Fleet"):

1. Makes an empty store through the fleet's own code (``connect``: the Alembic migration), for SQLite
   in a temporary file and for PostgreSQL in a throwaway cluster started here (``initdb`` as the
   ``postgres`` user when run as root, a free loopback port).
2. Inserts the synthetic fleet fast, around the library (sqlite3 ``executemany``, PostgreSQL
   ``COPY``): ``--accounts`` accounts with ``--reports`` daily reports each (the last 30 days); every
   account has its first change (unknown -> pass), 2% broke and recovered during the month (two more
   changes each, some in the last day). The reports' bodies are 16 bytes here: neither query reads
   them. Then ``ANALYZE``.
3. Times the library calls the commands make, with their JSON rendering, ``--runs`` times each
   (medians and ranges): ``fleet status --format json`` (every account), ``fleet changes --since 24h``
   and ``--since 7d``.
4. Storage per report: 2,000 reports with the body of a real lab report (bench/data/lab-report.json,
   a full check of a lab account: DNS, SMTP, IMAP) recorded through ``record_reports``, the growth of
   the database divided by 2,000 (SQLite: file size after a checkpoint; PostgreSQL:
   ``pg_total_relation_size('reports')``).

5. With ``--vs-batch N``, instead: a lab of N users, and ``fleet run --all`` against ``check --batch``
   on the same accounts (SMTP and IMAP logins, after a warm-up), alternating for ``--rounds``; the
   median of the per-round ratio of their rates (target >= 0.95), and of their CPU seconds (the
   process's own user + system time: steadier than the wall time on a shared machine).

Target: status and changes under 200 ms on both. Figures to stdout and bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inboxcheck._models import Report
from inboxcheck.fleet import store
from inboxcheck.fleet._crypto import FleetKey
from inboxcheck.fleet._db import connect
from lab.postgres import throwaway_postgres

DAY = 86_400.0
HERE = Path(__file__).resolve().parent
KEY = FleetKey(b"b" * 32)
CODES = ["smtp.auth.rejected", "imap.auth.rejected", "dns.spf.missing", "smtp.tls.cert_expired"]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster (the tests' own, lab/postgres.py) with one database, ``fleet``."""
    with throwaway_postgres(settings=["shared_buffers=256MB"], prefix="icbench-pg-") as server:
        import psycopg

        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fleet")
        yield server.url("fleet")


def synthetic(
    accounts: int, reports: int, now: float
) -> tuple[list[tuple[Any, ...]], Iterator[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of accounts, reports (lazily) and changes, as tuples in column order."""
    rng = random.Random(20261207)
    start = now - reports * DAY
    account_rows: list[tuple[Any, ...]] = []
    change_rows: list[tuple[Any, ...]] = []
    flaky = set(rng.sample(range(1, accounts + 1), accounts // 50))
    for i in range(1, accounts + 1):
        broken_now = i in flaky and rng.random() < 0.25
        state = "broken" if broken_now else "pass"
        last_report = (i - 1) * reports + reports
        address = f"user{i}@fleet{i % 997}.example"
        checked = now - rng.random() * DAY
        account_rows.append(
            (
                i,
                address,
                "{}",
                b"\0" * 40,
                b"\0" * 40,
                KEY.id,
                None,
                86400,
                False,
                now + rng.random() * DAY,
                state,
                start,
                last_report,
                None,
                0,
                last_report,
                checked,
                CODES[i % 4] if broken_now else None,
                "The server refused the password." if broken_now else None,
                store.status_entry(
                    address,
                    state,
                    start,
                    checked,
                    CODES[i % 4] if broken_now else None,
                    "The server refused the password." if broken_now else None,
                ),
                start,
                start,
            )
        )
        change_rows.append(
            (
                len(change_rows) + 1,
                i,
                start,
                "unknown",
                "pass",
                None,
                (i - 1) * reports + 1,
                f"evt_first{i:027x}",
                None,
                '{"appeared": [], "disappeared": [], "evidence": []}',
            )
        )
        if i in flaky:
            when = now - rng.random() * (reports - 1) * DAY
            for before, after, kind in (
                ("pass", "broken", "inbox.broken"),
                ("broken", "pass", "inbox.recovered"),
            ):
                if before == "broken" and broken_now:
                    break
                diff = {
                    "appeared": [CODES[i % 4]] if after == "broken" else [],
                    "disappeared": [] if after == "broken" else [CODES[i % 4]],
                    "evidence": [
                        {
                            "what": "smtp.login:smtp.auth.rejected.reply",
                            "before": None,
                            "after": "535 5.7.8 Error: authentication failed",
                        }
                    ],
                }
                change_rows.append(
                    (
                        len(change_rows) + 1,
                        i,
                        when,
                        before,
                        after,
                        (i - 1) * reports + 2,
                        (i - 1) * reports + 3,
                        f"evt_later{len(change_rows) + 1:027x}",
                        kind,
                        json.dumps(diff),
                    )
                )
                when = min(when + rng.random() * DAY, now)

    def report_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, accounts + 1):
            for n in range(reports):
                yield (
                    (i - 1) * reports + n + 1,
                    i,
                    None,
                    start + n * DAY,
                    "pass",
                    "pass",
                    "",
                    b"0123456789abcdef",
                )

    return account_rows, report_rows(), change_rows


def fill_sqlite(
    path: Path, rows: tuple[list[tuple[Any, ...]], Iterator[tuple[Any, ...]], list[tuple[Any, ...]]]
) -> None:
    accounts, reports, changes = rows
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.executemany("INSERT INTO accounts VALUES (" + ",".join("?" * 22) + ")", accounts)  # noqa: S608
    db.executemany("INSERT INTO reports VALUES (?,?,?,?,?,?,?,?)", reports)
    db.executemany("INSERT INTO changes VALUES (?,?,?,?,?,?,?,?,?,?)", changes)
    db.commit()
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def fill_postgres(
    url: str, rows: tuple[list[tuple[Any, ...]], Iterator[tuple[Any, ...]], list[tuple[Any, ...]]]
) -> None:
    import psycopg

    accounts, reports, changes = rows
    with psycopg.connect(url) as conn:
        for table, data in (("accounts", iter(accounts)), ("reports", reports), ("changes", iter(changes))):
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
        for table in ("accounts", "reports", "changes", "rounds"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 1)) FROM {table}"  # noqa: S608
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = await work()
        json.dumps(result)
        times.append((time.perf_counter() - began) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
    }


async def measure(url: str, runs: int, now: float) -> dict[str, Any]:
    engine = await connect(url)
    try:
        figures: dict[str, Any] = {}
        # What `fleet status --format json` prints, and the same as Python objects (the library call).
        figures["status"] = await timed(runs, lambda: store.status_document(engine))
        figures["status_objects"] = await timed(runs, lambda: store.status(engine))
        figures["changes_24h"] = await timed(runs, lambda: store.change_list(engine, since=now - DAY))
        figures["changes_7d"] = await timed(runs, lambda: store.change_list(engine, since=now - 7 * DAY))
        figures["rows"] = {
            "status": len(await store.status(engine)),
            "changes_24h": len(await store.change_list(engine, since=now - DAY)),
            "changes_7d": len(await store.change_list(engine, since=now - 7 * DAY)),
        }
        return figures
    finally:
        await engine.dispose()


async def storage_per_report(url: str, size: Callable[[], int], count: int = 2000) -> dict[str, float]:
    report = Report.model_validate_json((HERE / "data" / "lab-report.json").read_text())
    engine = await connect(url)
    try:
        from inboxcheck._models import Account

        payload = {
            "email_address": "size@lab.test",
            "display_name": "Size",
            "inbox_type": "CUSTOM_SMTP",
            "smtp_host": "mail.lab.test",
            "smtp_port": 587,
            "smtp_username": "size",
            "smtp_password": "x" * 16,
            "imap_host": "mail.lab.test",
            "imap_port": 993,
            "imap_username": "size",
            "imap_password": "x" * 16,
        }
        await store.add_accounts(
            engine, [Account.model_validate(payload)], key=KEY, interval=86400, now=time.time()
        )
        import sqlalchemy as sa

        from inboxcheck.fleet._schema import accounts

        async with engine.connect() as conn:
            account_id = (
                await conn.execute(sa.select(accounts.c.id).where(accounts.c.address == "size@lab.test"))
            ).scalar_one()
        before = size()
        for start in range(0, count, 200):
            await store.record_reports(
                engine,
                [
                    store.ReportEntry(account_id, None, report, str, time.time() + n)
                    for n in range(start, start + 200)
                ],
            )
    finally:
        await engine.dispose()
    grown = size() - before
    body = len(zlib.compress(report.model_dump_json().encode(), 6))
    return {
        "bytes_per_report": round(grown / count),
        "compressed_body_bytes": body,
        "json_bytes": len(report.model_dump_json()),
    }


def versus_batch(accounts: int, rounds: int, concurrency: int) -> dict[str, Any]:
    """``fleet run --all`` against ``check --batch`` on the same lab accounts, alternating, timed
    from spawn to exit (interpreter start-up included): SMTP and IMAP logins, as batch_bench.py."""
    from lab import Lab

    names = [f"u{i}" for i in range(accounts)]
    with Lab(users=names) as lab, tempfile.TemporaryDirectory(prefix="icfleet-") as tmp:
        workdir = Path(tmp)
        batch = workdir / "accounts.jsonl"
        batch.write_text("".join(json.dumps(lab.account(x)) + "\n" for x in names), encoding="utf-8")
        host, port = lab.nameserver
        common = [
            "--only",
            "smtp",
            "--only",
            "imap",
            "--nameserver",
            f"{host}:{port}",
            "--ca-file",
            str(lab.ca_file),
            "--concurrency",
            str(concurrency),
            "--per-host",
            str(concurrency),
            "-q",
        ]
        env = {
            **os.environ,
            "INBOXCHECK_FLEET_KEY": __import__("base64").b64encode(b"f" * 32).decode(),
            "INBOXCHECK_FLEET_DB": f"sqlite:///{workdir / 'fleet.db'}",
        }
        cli = [sys.executable, "-m", "inboxcheck"]
        subprocess.run([*cli, "fleet", "add", str(batch)], env=env, check=True, capture_output=True)
        # Warm-up: Dovecot makes each Maildir at the first login.
        subprocess.run([*cli, "fleet", "run", "--all", *common], env=env, check=False, capture_output=True)
        times: dict[str, list[float]] = {"check --batch": [], "fleet run": []}
        # The command's own CPU (user + system): the machine is shared, and its wall time moves with
        # the other sessions' load far more than this does.
        cpu: dict[str, list[float]] = {"check --batch": [], "fleet run": []}
        loads: list[float] = []
        for n in range(rounds):
            order = [
                ("check --batch", [*cli, "check", "--batch", str(batch), *common]),
                ("fleet run", [*cli, "fleet", "run", "--all", *common]),
            ]
            for name, command in order if n % 2 == 0 else order[::-1]:
                loads.append(os.getloadavg()[0])
                used = _children_cpu()
                began = time.perf_counter()
                done = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
                times[name].append(time.perf_counter() - began)
                cpu[name].append(_children_cpu() - used)
                if done.returncode not in (0, 3):
                    raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr[-500:]}")
        rates = {name: round(accounts / statistics.median(values), 1) for name, values in times.items()}
        ratios = [b / f for b, f in zip(times["check --batch"], times["fleet run"], strict=True)]
        cpu_ratios = [b / f for b, f in zip(cpu["check --batch"], cpu["fleet run"], strict=True)]
        return {
            "accounts": accounts,
            "rounds": rounds,
            "concurrency": concurrency,
            "accounts_per_s": rates,
            "fleet_over_batch_median": round(statistics.median(ratios), 3),
            "cpu_fleet_over_batch_median": round(statistics.median(cpu_ratios), 3),
            "seconds": {k: [round(v, 2) for v in vals] for k, vals in times.items()},
            "cpu_seconds": {k: [round(v, 2) for v in vals] for k, vals in cpu.items()},
            "load_average": [round(min(loads), 1), round(max(loads), 1)],
        }


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--vs-batch", type=int, metavar="ACCOUNTS", help="Instead: fleet run vs check --batch."
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    if args.vs_batch:
        figures = versus_batch(args.vs_batch, args.rounds, args.concurrency)
        print(json.dumps(figures, indent=1))
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "fleet-vs-batch.json").write_text(json.dumps(figures, indent=1) + "\n")
        return 0 if figures["fleet_over_batch_median"] >= 0.95 else 1
    now = time.time()
    results: dict[str, Any] = {"accounts": args.accounts, "reports_per_account": args.reports}
    for backend in args.backends.split(","):
        began = time.perf_counter()
        if backend == "sqlite":
            workdir = Path(tempfile.mkdtemp(prefix="icbench-fleet-"))
            path = workdir / "fleet.db"
            url = f"sqlite:///{path}"
            asyncio.run(_migrated(url))
            fill_sqlite(path, synthetic(args.accounts, args.reports, now))
            filled = time.perf_counter() - began
            figures = asyncio.run(measure(url, args.runs, now))

            def sqlite_size(path: Path = path) -> int:
                db = sqlite3.connect(path)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.close()
                return path.stat().st_size

            figures["storage"] = asyncio.run(storage_per_report(url, sqlite_size))
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            with postgres_cluster() as url:
                asyncio.run(_migrated(url))
                fill_postgres(url, synthetic(args.accounts, args.reports, now))
                filled = time.perf_counter() - began
                figures = asyncio.run(measure(url, args.runs, now))

                def pg_size(url: str = url) -> int:
                    import psycopg

                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("VACUUM reports")
                        row = conn.execute("SELECT pg_total_relation_size('reports')").fetchone()
                        assert row is not None
                        return int(row[0])

                figures["storage"] = asyncio.run(storage_per_report(url, pg_size))
        figures["fill_s"] = round(filled, 1)
        results[backend] = figures
        print(backend, json.dumps(figures, indent=1), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=1) + "\n")
    met = all(
        results[b][q]["median_ms"] < 200
        for b in args.backends.split(",")
        for q in ("status", "changes_24h", "changes_7d")
    )
    print("target met" if met else "target NOT met")
    return 0 if met else 1


async def _migrated(url: str) -> None:
    engine = await connect(url)
    await engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
