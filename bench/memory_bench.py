"""Benchmark: peak memory of ``inboxcheck check --batch`` on 10,000, 50,000 and 100,000-line files.

    python bench/memory_bench.py [--lines 10000,50000,100000] [--per-domain 10] [--concurrency 20]
                                 [--profile LINES] [--no-netns]

What it does (see bench/README.md, "Memory"):

1. Like the other benchmarks, makes a network namespace of its own and re-runs itself inside it
   (root; ``--no-netns`` or no root: the machine's loopback).
2. Generates one zone, ``mem.test``, with a domain per ``--per-domain`` accounts of the largest file
   (MX, SPF and DMARC each; no DKIM key, so the DKIM guesses stop at ``_domainkey``, RFC 8020), and
   starts the lab, whose NSD serves it.
3. Generates the batch files (JSONL, one account a line, passwords from ``INBOXCHECK_SMTP_PASSWORD``
   as a platform's export would leave them out), every account on its own SMTP and IMAP host names
   (``smtp.dN.mem.test``): distinct domains and hosts are what could make a batch's memory grow.
4. Runs the real CLI on each file, ``--only account --only dns`` through ``--nameserver``, results
   to ``--output``, and reads the child's peak RSS from ``wait4`` (``ru_maxrss``, the kernel's
   high-water mark), sampling VmRSS from /proc meanwhile to draw the curve.

Why these checks: the login checks cost two TLS handshakes per account and would make a 100,000-line
run take most of an hour on two cores, while the memory a batch could accumulate lives in the batch
machinery (reader, queue, results, summary, per-host bounds) and the DNS client's shared cache of
lookups; the account and DNS checks go through all of it, with real DNS answers, at a few hundred
accounts a second.

Targets: peak RSS at most 100 MB at every size (issue 11; issue 6 asked for 150 MB), and flat: the
largest file's peak at most 10% (or 10 MB, whichever is larger) above the smallest file's peak.
Figures to stdout and ``bench/results/memory.json``; exit code 0 when both are met.

``--profile LINES`` instead runs one batch of that many lines in this process under tracemalloc
and prints the allocations still alive at the end, by line of code: how a growth was found.
Only runs when invoked; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._netns import in_namespace  # noqa: E402

BIN = Path(sys.executable).parent
TARGET_MB = 100.0
FLAT_SHARE = 0.10
FLAT_MB = 10.0
PASSWORD = "bench-password-not-a-secret"


def write_zone(directory: Path, domains: int) -> None:
    lines = [
        "$ORIGIN mem.test.",
        "$TTL 300",
        "@ IN SOA ns.mem.test. hostmaster.mem.test. 1 3600 600 86400 300",
        "@ IN NS ns.mem.test.",
        "ns IN A 127.0.0.1",
        "mx IN A 127.0.0.1",
    ]
    for d in range(domains):
        name = f"d{d}"
        lines += [
            f"{name} IN MX 10 mx.mem.test.",
            f'{name} IN TXT "v=spf1 ip4:127.0.0.1 -all"',
            f'_dmarc.{name} IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{name}.mem.test"',
            f"smtp.{name} IN A 127.0.0.1",
            f"imap.{name} IN A 127.0.0.1",
        ]
    (directory / "mem.test.zone").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_batch(path: Path, lines: int, per_domain: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            domain = f"d{i // per_domain}.mem.test"
            address = f"user{i}@{domain}"
            payload = {
                "email_address": address,
                "display_name": f"User {i}",
                "inbox_type": "CUSTOM_SMTP",
                "smtp_host": f"smtp.{domain}",
                "smtp_port": 587,
                "smtp_username": address,
                "smtp_use_tls": True,
                "imap_host": f"imap.{domain}",
                "imap_port": 993,
                "imap_username": address,
                "imap_use_ssl": True,
                "daily_limit": 25,
            }
            handle.write(json.dumps(payload) + "\n")


def _rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_one(batch: Path, output: Path, lines: int, nameserver: str, concurrency: int) -> dict[str, Any]:
    output.unlink(missing_ok=True)
    argv = [
        str(BIN / "inboxcheck"),
        "check",
        "--batch",
        str(batch),
        "--output",
        str(output),
        "--format",
        "json",
        "--only",
        "account",
        "--only",
        "dns",
        "--nameserver",
        nameserver,
        "--concurrency",
        str(concurrency),
        "--timeout",
        "30",
    ]
    env = dict(os.environ, INBOXCHECK_SMTP_PASSWORD=PASSWORD)
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            rss = _rss_mb(process.pid)
            if rss is not None:
                samples.append((round(time.perf_counter() - start, 1), round(rss, 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stderr is not None
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    process.stderr.close()
    written = sum(1 for _ in output.open(encoding="utf-8"))
    output.unlink()
    if written != lines:
        raise RuntimeError(f"{lines} lines in, {written} results out: {stderr[-1500:]}")
    return {
        "lines": lines,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "seconds": elapsed,
        "accounts_per_s": lines / elapsed,
        "exit_code": process.returncode,
        "summary": stderr.strip().splitlines()[-3:],
        "rss_samples_mb": samples,
    }


def _inside(args: argparse.Namespace) -> dict[str, Any]:
    from lab import Lab

    sizes = sorted(int(x) for x in args.lines.split(",") if x.strip())
    domains = -(-sizes[-1] // args.per_domain)
    with tempfile.TemporaryDirectory(prefix="icmem-") as tmp:
        workdir = Path(tmp)
        zones = workdir / "zones"
        zones.mkdir()
        write_zone(zones, domains)
        with Lab(zone_dirs=[zones]) as lab:
            nameserver = f"{lab.nameserver[0]}:{lab.nameserver[1]}"
            rows = []
            for lines in sizes:
                batch = workdir / f"batch-{lines}.jsonl"
                write_batch(batch, lines, args.per_domain)
                print(f"  {lines:,} lines ({batch.stat().st_size / 1e6:.0f} MB) ...", file=sys.stderr)
                row = run_one(batch, workdir / "out.jsonl", lines, nameserver, args.concurrency)
                rows.append(row)
                print(
                    f"    peak RSS {row['peak_rss_mb']:.1f} MB, {row['seconds']:.0f} s "
                    f"({row['accounts_per_s']:.0f} accounts/s)",
                    file=sys.stderr,
                )
                batch.unlink()
    return {"per_domain": args.per_domain, "domains": domains, "concurrency": args.concurrency, "rows": rows}


def _profile(lines: int, per_domain: int, top: int = 15) -> None:
    """One batch in this process under tracemalloc: what is still allocated at the end, by line."""
    import tracemalloc

    from inboxcheck._batch import run_batch
    from inboxcheck._options import CheckOptions, Family
    from lab import Lab

    with tempfile.TemporaryDirectory(prefix="icmem-") as tmp:
        workdir = Path(tmp)
        zones = workdir / "zones"
        zones.mkdir()
        write_zone(zones, -(-lines // per_domain))
        batch = workdir / "batch.jsonl"
        write_batch(batch, lines, per_domain)
        with Lab(zone_dirs=[zones]) as lab:
            options = CheckOptions(
                timeout=30,
                nameservers=(f"{lab.nameserver[0]}:{lab.nameserver[1]}",),  # type: ignore[arg-type]
                families=frozenset({Family.ACCOUNT, Family.DNS}),
            )
            tracemalloc.start(4)
            before = tracemalloc.take_snapshot()
            snapshots: list[tracemalloc.Snapshot] = []
            done = 0

            def on_result(_: object) -> None:
                # The last result: the batch's structures (DNS cache, bounds, summary) are still alive.
                nonlocal done
                done += 1
                if done == lines:
                    snapshots.append(tracemalloc.take_snapshot())

            asyncio.run(
                run_batch(
                    batch,
                    options=options,
                    output=workdir / "out.jsonl",
                    env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD},
                    on_result=on_result,
                )
            )
            current, peak = tracemalloc.get_traced_memory()
    print(f"traced at the end {current / 1e6:.1f} MB, traced peak {peak / 1e6:.1f} MB")
    print("alive at the last result, by line, growth since the start:")
    for stat in snapshots[0].compare_to(before, "lineno")[:top]:
        print(f"  {stat}")
    print("same, by traceback of the largest:")
    for stat in snapshots[0].compare_to(before, "traceback")[:3]:
        print(f"  {stat}")
        for frame in stat.traceback.format()[-8:]:
            print(f"      {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", default="10000,50000,100000", help="batch sizes, comma-separated")
    parser.add_argument("--per-domain", type=int, default=10, help="accounts per domain")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--profile", type=int, default=0, help="tracemalloc one batch of this many lines")
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "memory.json")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside and not args.no_netns and os.geteuid() == 0 and shutil.which("ip"):
        passthrough = [
            "--lines",
            args.lines,
            "--per-domain",
            str(args.per_domain),
            "--concurrency",
            str(args.concurrency),
            "--profile",
            str(args.profile),
            "--json",
            str(args.json),
        ]
        return in_namespace("icmem", __file__, passthrough)
    if args.profile:
        _profile(args.profile, args.per_domain)
        return 0
    result = _inside(args)
    rows = result["rows"]
    smallest, largest = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
    growth = largest - smallest
    under = all(r["peak_rss_mb"] <= TARGET_MB for r in rows)
    flat = growth <= max(FLAT_MB, FLAT_SHARE * smallest)
    result |= {"growth_mb": growth, "under_target": under, "flat": flat, "met": under and flat}
    result["python"] = sys.version.split()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    domains, per_domain = result["domains"], result["per_domain"]
    print(f"{domains:,} domains, {per_domain} accounts each, concurrency {args.concurrency}\n")
    print("| lines | peak RSS | time | accounts/s | RSS at 25% / 50% / 75% of the run |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        samples = [mb for _, mb in r["rss_samples_mb"]] or [0.0]
        quarters = " / ".join(
            f"{samples[min(len(samples) - 1, len(samples) * q // 4)]:.0f}" for q in (1, 2, 3)
        )
        print(
            f"| {r['lines']:,} | {r['peak_rss_mb']:.1f} MB | {r['seconds']:.0f} s | "
            f"{r['accounts_per_s']:.0f} | {quarters} MB |"
        )
    print(
        f"\npeak RSS {'under' if under else 'NOT under'} {TARGET_MB:.0f} MB at every size; "
        f"growth from {rows[0]['lines']:,} to {rows[-1]['lines']:,} lines: {growth:+.1f} MB "
        f"({'flat' if flat else 'NOT flat'})"
    )
    print(f"raw figures: {args.json}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
