"""Benchmark: ``inboxcheck check --batch`` on 1,000 lab accounts, against a bare-protocol loop and swaks+curl.

    python bench/batch_bench.py --rounds 5 [--concurrency 50] [--before DIR] [--long-lines N]

Rounds (issue 11): at one concurrency, every method once per round, the order reversed each round;
medians and ranges of accounts/s, client CPU and peak RSS (``wait4``), and the median of the
per-round ratio inboxcheck / bare. ``--before DIR`` adds the ``inboxcheck`` of another source tree
as a third method. Targets: ratio >= 0.9 and peak RSS <= 100 MB. Without ``--rounds``, the sweep:

    python bench/batch_bench.py [--accounts 1000] [--concurrency 4,8,16,32,64] [--sample 100]
                                [--tools-all] [--no-netns]

What it does (see bench/README.md, "Batch"):

1. Like the other benchmarks, makes a network namespace of its own and re-runs itself inside it
   (root; ``--no-netns`` or no root: the machine's loopback).
2. Starts the lab with ``--accounts`` distinct users (real Postfix with STARTTLS submission and SASL
   through Dovecot, Dovecot with IMAPS, NSD) and writes their payloads to a JSONL batch file.
3. Warm-up: one unmeasured bare pass over every account (Dovecot creates each user's Maildir on the
   first login, which no measured pass should pay for), which also proves every account logs in.
4. For each concurrency N, in alternating order:
   - the bare loop: this file with ``--bare N`` in a subprocess; per account, an aiosmtplib
     connect + STARTTLS + AUTH + QUIT and an aioimaplib IMAPS greeting + LOGIN + LOGOUT, run
     concurrently, N accounts at a time, one shared verifying TLS context, nothing else;
   - inboxcheck: the real CLI in a subprocess, ``inboxcheck check --batch FILE --output OUT
     --format json --only smtp --only imap --nameserver NSD --ca-file CA --concurrency N
     --per-host N`` (the lab is one host, so the per-host bound is set to N as well).
   Both are timed from spawn to exit, interpreter start-up included.
5. At the best inboxcheck concurrency, the full run (every check family) and the default bounds
   (``--concurrency 20 --per-host 4``) as further figures.
6. swaks (``--tls --tls-verify --auth PLAIN --quit-after AUTH``) then curl (``imaps://``, login and
   LIST), one account after another, for ``--sample`` accounts (all with ``--tools-all``); the rate
   is extrapolated to the whole batch.

Every method must log every account in (counted per account from its own output), or the benchmark
says so and fails: figures from failing logins would mean nothing. The lab's logs are searched for
Postfix and Dovecot process-limit warnings, which would mean the lab, not the client, set the pace.

Targets: inboxcheck (logins only, best concurrency) >= 0.8 x the bare loop's best throughput, and
>= 5 x swaks+curl. Figures to stdout and ``bench/results/batch.json``; exit code 0 when both are met.
Only runs when invoked; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._batch_methods import (  # noqa: E402
    all_logged_in,
    bare_loop,
    limit_warnings,
    print_profile,
    run_bare,
    run_inboxcheck,
    run_tools,
)
from bench._netns import in_namespace  # noqa: E402

TARGET_BARE = 0.8
# Issue 11, measured by --rounds at concurrency 50.
TARGET_ROUNDS_BARE = 0.9
TARGET_RSS_MB = 100.0
TARGET_TOOLS = 5.0
LOGIN_CHECKS = ("smtp.login", "imap.login")


# --- the whole measurement -------------------------------------------------------------------------


def _inside(args: argparse.Namespace) -> dict[str, Any]:
    from lab import Lab

    names = [f"u{i:04d}" for i in range(args.accounts)]
    started = time.perf_counter()
    with Lab(users=names) as lab, tempfile.TemporaryDirectory(prefix="icbatch-") as tmp:
        lab_start = time.perf_counter() - started
        workdir = Path(tmp)
        # Passwords are in these files: the temp dir is private (0700) and removed at the end.
        by_name = [lab.account(name, smtp="submission", imap="imaps") for name in names]
        by_address = [
            lab.account(name, smtp="submission", imap="imaps", host_style="address") for name in names
        ]
        batch = workdir / "accounts.jsonl"
        batch.write_text("".join(json.dumps(p) + "\n" for p in by_name), encoding="utf-8")
        bare_batch = workdir / "accounts-by-address.jsonl"
        bare_batch.write_text("".join(json.dumps(p) + "\n" for p in by_address), encoding="utf-8")
        nameserver = f"{lab.nameserver[0]}:{lab.nameserver[1]}"
        logs = lab.info()["logs"]
        n = args.accounts

        print(f"lab with {n} users up in {lab_start:.1f} s; warm-up pass ...", file=sys.stderr)
        warm = run_bare(bare_batch, 16, lab.ca_file, n)
        if not all_logged_in(warm):
            raise RuntimeError(f"the warm-up pass did not log every account in: {warm}")

        rows: list[dict[str, Any]] = []
        for index, concurrency in enumerate(args.concurrency):
            runs: list[Callable[[], dict[str, Any]]] = [
                functools.partial(run_bare, bare_batch, concurrency, lab.ca_file, n),
                functools.partial(
                    run_inboxcheck,
                    batch,
                    workdir,
                    concurrency=concurrency,
                    per_host=concurrency,
                    nameserver=nameserver,
                    ca_file=lab.ca_file,
                    accounts=n,
                    logins_only=True,
                ),
            ]
            for run in runs if index % 2 == 0 else runs[::-1]:
                row = run()
                rows.append(row)
                print(
                    f"  {row['method']:<11} c={concurrency:<3} {row['accounts_per_s']:7.1f} accounts/s "
                    f"({row['both_ok']}/{row['accounts']} logged in, machine {row['machine_busy']:.0%} busy)",
                    file=sys.stderr,
                )
        ours = [r for r in rows if r["method"] == "inboxcheck"]
        best_c = max(ours, key=lambda r: r["accounts_per_s"])["concurrency"]
        best_bare = max((r for r in rows if r["method"] == "bare"), key=lambda r: r["accounts_per_s"])
        # Not a target: the bare loop doing the protocol steps inboxcheck's checks do (IMAP EXAMINE
        # INBOX besides LOGIN), to tell the client's overhead from the servers' extra work.
        same = run_bare(bare_batch, best_bare["concurrency"], lab.ca_file, n, same_steps=True)
        rows.append(same)
        print(
            f"  bare, same steps c={same['concurrency']} {same['accounts_per_s']:7.1f} accounts/s",
            file=sys.stderr,
        )
        for concurrency, per_host, logins_only in ((best_c, best_c, False), (20, 4, True)):
            row = run_inboxcheck(
                batch,
                workdir,
                concurrency=concurrency,
                per_host=per_host,
                nameserver=nameserver,
                ca_file=lab.ca_file,
                accounts=n,
                logins_only=logins_only,
            )
            rows.append(row)
            print(
                f"  {row['method']:<11} c={concurrency}/{per_host} {row['accounts_per_s']:7.1f} accounts/s "
                f"({row['both_ok']}/{row['accounts']} logged in)",
                file=sys.stderr,
            )
        sample = by_address if args.tools_all else by_address[: args.sample]
        print(f"  swaks+curl on {len(sample)} accounts, one after another ...", file=sys.stderr)
        tools = run_tools(sample, lab.ca_file, n)
        rows.append(tools)
        return {
            "accounts": n,
            "lab_start_s": lab_start,
            "warmup": warm,
            "rows": rows,
            "limit_warnings": limit_warnings(logs)[:20],
        }


# --- rounds: one concurrency, several rounds, alternating, medians (issue 11) ----------------------


def _compile(package: Path) -> None:
    """Write the package's bytecode, as installing a wheel does: where PYTHONDONTWRITEBYTECODE is set
    (this sandbox sets it) every start would otherwise compile inboxcheck's modules again."""
    import compileall

    compileall.compile_dir(str(package), quiet=1)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _rounds(args: argparse.Namespace) -> dict[str, Any]:
    from lab import Lab

    names = [f"u{i:04d}" for i in range(args.accounts)]
    n, concurrency = args.accounts, args.concurrency[0]
    with Lab(users=names) as lab, tempfile.TemporaryDirectory(prefix="icbatch-") as tmp:
        workdir = Path(tmp)
        batch = workdir / "accounts.jsonl"
        batch.write_text(
            "".join(json.dumps(lab.account(x, smtp="submission", imap="imaps")) + "\n" for x in names),
            encoding="utf-8",
        )
        bare_batch = workdir / "accounts-by-address.jsonl"
        bare_batch.write_text(
            "".join(
                json.dumps(lab.account(x, smtp="submission", imap="imaps", host_style="address")) + "\n"
                for x in names
            ),
            encoding="utf-8",
        )
        nameserver = f"{lab.nameserver[0]}:{lab.nameserver[1]}"
        _compile(REPO / "inboxcheck")
        methods: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("bare", functools.partial(run_bare, bare_batch, concurrency, lab.ca_file, n)),
            (
                "inboxcheck",
                functools.partial(
                    run_inboxcheck,
                    batch,
                    workdir,
                    concurrency=concurrency,
                    per_host=concurrency,
                    nameserver=nameserver,
                    ca_file=lab.ca_file,
                    accounts=n,
                    logins_only=True,
                    # The same way as the code before: python -m from its tree.
                    source=REPO,
                ),
            ),
        ]
        if args.before is not None:
            _compile(args.before / "inboxcheck")
            methods.append(
                (
                    "before",
                    functools.partial(
                        run_inboxcheck,
                        batch,
                        workdir,
                        concurrency=concurrency,
                        per_host=concurrency,
                        nameserver=nameserver,
                        ca_file=lab.ca_file,
                        accounts=n,
                        logins_only=True,
                        source=args.before,
                    ),
                )
            )
        # Unmeasured: Dovecot makes each Maildir at the first login; page cache, bytecode.
        print(f"lab with {n} users up; warm-up pass of each method ...", file=sys.stderr)
        for name, run in methods:
            warm = run()
            if not all_logged_in(warm):
                raise RuntimeError(f"the warm-up of {name} did not log every account in: {warm}")
        if args.profile is not None:
            assert isinstance(methods[1][1], functools.partial)
            methods[1][1](profile=args.profile)
            print_profile(args.profile)
        rows: list[dict[str, Any]] = []
        for index in range(args.rounds):
            for name, run in methods if index % 2 == 0 else methods[::-1]:
                row = {**run(), "label": name, "round": index + 1}
                rows.append(row)
                print(
                    f"  round {index + 1} {name:<10} {row['accounts_per_s']:6.1f} accounts/s, "
                    f"{row['seconds']:5.1f} s, client CPU {row['client_cpu_s']:4.1f} s, "
                    f"peak RSS {row['peak_rss_mb']:5.1f} MB, load {row['load_average']:.1f} "
                    f"({row['both_ok']}/{row['accounts']} logged in)",
                    file=sys.stderr,
                )
        # Memory along a longer file: the lab's mailboxes again and again (a user's logins are far
        # apart). Each copy is another account (its display name carries the copy's number), as the
        # batch would otherwise log every later copy as a duplicate of the first and check only n.
        long_rows: list[dict[str, Any]] = []
        if args.long_lines:
            long_batch = workdir / "long.jsonl"
            payloads = [lab.account(x, smtp="submission", imap="imaps") for x in names]
            with long_batch.open("w", encoding="utf-8") as handle:
                for i in range(args.long_lines):
                    copy = dict(payloads[i % n])
                    copy["display_name"] = f"{copy['display_name']} {i // n}"
                    handle.write(json.dumps(copy) + "\n")
            for name, run in methods[1:]:
                assert isinstance(run, functools.partial)
                row = run.func(long_batch, *run.args[1:], **{**run.keywords, "accounts": args.long_lines})
                row["label"] = name
                long_rows.append(row)
                print(
                    f"  {args.long_lines} lines {name:<10} {row['accounts_per_s']:6.1f} accounts/s, "
                    f"peak RSS {row['peak_rss_mb']:5.1f} MB ({row['both_ok']}/{row['accounts']} logged in)",
                    file=sys.stderr,
                )
        summary: dict[str, Any] = {}
        for name, _ in methods:
            mine = [r for r in rows if r["label"] == name]
            summary[name] = {
                key: _spread([r[key] for r in mine])
                for key in ("accounts_per_s", "seconds", "client_cpu_s", "peak_rss_mb", "load_average")
            }
        for name, _ in methods[1:]:
            ratios = []
            for index in range(args.rounds):
                same = {r["label"]: r for r in rows if r["round"] == index + 1}
                ratios.append(same[name]["accounts_per_s"] / same["bare"]["accounts_per_s"])
            summary[name]["vs_bare_same_round"] = _spread(ratios)
        return {
            "mode": "rounds",
            "accounts": n,
            "concurrency": concurrency,
            "rounds": args.rounds,
            "before": str(args.before) if args.before else None,
            "rows": rows,
            "summary": summary,
            "long_rows": long_rows,
            "limit_warnings": limit_warnings(lab.info()["logs"])[:20],
        }


def _rounds_report(result: dict[str, Any]) -> tuple[str, bool]:
    summary = result["summary"]
    lines = [
        f"{result['accounts']} accounts, concurrency {result['concurrency']}, {result['rounds']} rounds "
        "(medians, range in brackets)",
        "",
        "| method | accounts/s | time | client CPU | peak RSS | x bare (same round) | load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(spread: dict[str, float], fmt: str) -> str:
        return f"{spread['median']:{fmt}} ({spread['min']:{fmt}}-{spread['max']:{fmt}})"

    for name, s in summary.items():
        ratio = cell(s["vs_bare_same_round"], ".2f") if "vs_bare_same_round" in s else ""
        lines.append(
            f"| {name} | {cell(s['accounts_per_s'], '.1f')} | {cell(s['seconds'], '.1f')} s | "
            f"{cell(s['client_cpu_s'], '.1f')} s | {cell(s['peak_rss_mb'], '.0f')} MB | {ratio} | "
            f"{cell(s['load_average'], '.1f')} |"
        )
    ours = summary["inboxcheck"]
    met_speed = ours["vs_bare_same_round"]["median"] >= TARGET_ROUNDS_BARE
    met_memory = ours["peak_rss_mb"]["max"] <= TARGET_RSS_MB
    all_in = all(all_logged_in(r) for r in result["rows"])
    lines += [
        "",
        f"inboxcheck / bare, same round, median: {ours['vs_bare_same_round']['median']:.2f} "
        f"(target >= {TARGET_ROUNDS_BARE}): {'met' if met_speed else 'NOT met'}",
        f"inboxcheck peak RSS, largest of the rounds: {ours['peak_rss_mb']['max']:.0f} MB "
        f"(target <= {TARGET_RSS_MB:g} MB): {'met' if met_memory else 'NOT met'}",
    ]
    for row in result["long_rows"]:
        lines.append(
            f"{row['label']}, {row['accounts']:,} lines (the accounts over and over): peak RSS "
            f"{row['peak_rss_mb']:.0f} MB, {row['accounts_per_s']:.1f} accounts/s, "
            f"{row['both_ok']:,} of {row['accounts']:,} logged in"
        )
    if not all_in:
        lines.append("NOT every account logged in with every method: the figures mean nothing")
    return "\n".join(lines), met_speed and met_memory and all_in


def _verdict(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    bare = max((r for r in rows if r["method"] == "bare"), key=lambda r: r["accounts_per_s"])
    ours = max((r for r in rows if r["method"] == "inboxcheck"), key=lambda r: r["accounts_per_s"])
    tools = next(r for r in rows if r["method"] == "swaks+curl")
    same = next((r for r in rows if r["method"] == "bare+same-steps"), None)
    all_in = all(all_logged_in(r) for r in rows)
    vs_bare = ours["accounts_per_s"] / bare["accounts_per_s"]
    vs_tools = ours["accounts_per_s"] / tools["accounts_per_s"]
    return {
        "best_bare": {"concurrency": bare["concurrency"], "accounts_per_s": bare["accounts_per_s"]},
        "best_inboxcheck": {"concurrency": ours["concurrency"], "accounts_per_s": ours["accounts_per_s"]},
        "inboxcheck_vs_bare": vs_bare,
        "inboxcheck_vs_tools": vs_tools,
        "inboxcheck_vs_bare_same_steps": ours["accounts_per_s"] / same["accounts_per_s"] if same else None,
        "every_account_logged_in_everywhere": all_in,
        "met": all_in and vs_bare >= TARGET_BARE and vs_tools >= TARGET_TOOLS,
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| method | concurrency | accounts/s | time for the batch | logged in (SMTP / IMAP / both) "
        "| client CPU | machine busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        conc = f"{r['concurrency']}/{r['per_host']}" if "per_host" in r else str(r["concurrency"])
        seconds = r.get("extrapolated_seconds_for_all", r["seconds"])
        label = r["method"] + (f" ({r['sample']}, extrapolated)" if "sample" in r else "")
        lines.append(
            f"| {label} | {conc} | {r['accounts_per_s']:.1f} | {seconds:.1f} s | "
            f"{r['smtp_ok']} / {r['imap_ok']} / {r['both_ok']} of {r['accounts']} | "
            f"{r['client_cpu_s']:.1f} s | {r['machine_busy']:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--concurrency", default="4,8,16,32,64", help="comma-separated levels to try")
    parser.add_argument("--sample", type=int, default=100, help="accounts for swaks+curl (then extrapolated)")
    parser.add_argument("--tools-all", action="store_true", help="run swaks+curl on every account")
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "batch.json")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--same-steps", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="instead of the sweep: this many rounds at the first --concurrency, alternating, medians",
    )
    parser.add_argument(
        "--before", type=Path, help="with --rounds: a source tree of the code before, run as a third method"
    )
    parser.add_argument(
        "--long-lines", type=int, default=0, help="with --rounds: then one run of each on a file this long"
    )
    parser.add_argument(
        "--profile", type=Path, help="with --rounds: one inboxcheck run under cProfile (CPU) first"
    )
    args = parser.parse_args()
    if args.bare:
        payloads = [json.loads(line) for line in args.batch.read_text(encoding="utf-8").splitlines() if line]
        counts = asyncio.run(bare_loop(payloads, args.bare, args.ca, same_steps=args.same_steps))
        print(json.dumps(counts))
        return 0
    if not args.inside and not args.no_netns and os.geteuid() == 0 and shutil.which("ip"):
        passthrough = [
            "--accounts",
            str(args.accounts),
            "--concurrency",
            args.concurrency,
            "--sample",
            str(args.sample),
            "--json",
            str(args.json),
            "--rounds",
            str(args.rounds),
            "--long-lines",
            str(args.long_lines),
            *(["--before", str(args.before.resolve())] if args.before else []),
            *(["--profile", str(args.profile.resolve())] if args.profile else []),
            *(["--tools-all"] if args.tools_all else []),
        ]
        return in_namespace("icbatch", __file__, passthrough)
    if args.rounds:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
        result = _rounds(args)
        text, met = _rounds_report(result)
        result["python"] = sys.version.split()[0]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(text)
        print(f"raw figures: {args.json}")
        return 0 if met else 1
    for tool in ("swaks", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: scripts/install-system-deps.sh installs it", file=sys.stderr)
            return 2
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    result = _inside(args)
    result["verdict"] = _verdict(result)
    result["python"] = sys.version.split()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    v = result["verdict"]
    print(_table(result))
    print(
        f"\ninboxcheck at its best (c={v['best_inboxcheck']['concurrency']}): "
        f"{v['best_inboxcheck']['accounts_per_s']:.1f} accounts/s = {v['inboxcheck_vs_bare']:.2f} x the bare "
        f"loop at its best (c={v['best_bare']['concurrency']}, target >= {TARGET_BARE}), "
        f"{v['inboxcheck_vs_tools']:.1f} x swaks+curl (target >= {TARGET_TOOLS:g})"
    )
    if v["inboxcheck_vs_bare_same_steps"] is not None:
        print(
            f"(not a target) against the bare loop doing the same protocol steps (IMAP EXAMINE "
            f"INBOX too): {v['inboxcheck_vs_bare_same_steps']:.2f} x"
        )
    if not v["every_account_logged_in_everywhere"]:
        print("NOT every account logged in with every method: the figures mean nothing", file=sys.stderr)
    if result["limit_warnings"]:
        print(
            f"lab process-limit warnings: {len(result['limit_warnings'])}, e.g. {result['limit_warnings'][0]}"
        )
    else:
        print("no Postfix or Dovecot process-limit warning in the lab's logs")
    print(f"raw figures: {args.json}")
    return 0 if v["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
