"""Benchmark: how long ``inboxcheck --version`` takes to start, against ``checkdmarc --help``.

    python bench/startup_bench.py [--runs 40] [--warmup 3]
    python bench/startup_bench.py --account [--runs 20] [--before TREE] [--importtime] [--no-bytecode]

``--account`` (issue 22): one lab account, whole process: ``inboxcheck check ACCOUNT`` (every check,
and the two logins only) against swaks + curl doing the same two logins, one after another, in
alternating rounds; wall time and CPU time (user + sys of the child and its children, from
``wait4``), with the machine's load average. ``--before TREE`` also runs ``python -m inboxcheck``
from another source tree (the code before a change) in the same rounds. ``--importtime`` prints the
largest imports of one ``check`` run. ``--no-bytecode`` also runs a copy of this tree without
inboxcheck's compiled bytecode (what every start costs where ``PYTHONDONTWRITEBYTECODE`` is set and
nothing compiled the package, as in this sandbox; an installed wheel has its bytecode). Target: at
most 2.5 times swaks + curl. Needs the lab's packages and swaks and curl
(``scripts/install-system-deps.sh``).

Both are the console scripts of the running interpreter's environment (``sys.executable``'s bin
dir), run directly as a shell would, not through pyenv's shims (a shim is a bash script that runs
``pyenv exec``, which alone costs tens of milliseconds). Each round runs the two commands one after
the other, alternating which goes first, so load on the machine touches both alike. The wall time of
each run is measured from just before ``fork`` to ``wait`` returning.

Targets: the median of ``inboxcheck --version`` under 150 ms, and not above checkdmarc's median.
Figures to stdout and ``bench/results/startup.json``; exit code 0 when both targets are met.
Only runs when invoked; not part of the test suite. Needs ``pip install -e '.[bench]'`` (checkdmarc).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 150.0
BIN = Path(sys.executable).parent


def _time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {completed.returncode}: {completed.stderr.decode()}")
    return elapsed * 1000


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": p90,
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
    }


def _imports_at_start(script: Path) -> list[str]:
    """The modules ``inboxcheck --version`` imports (from ``-X importtime``), for the record."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows: list[tuple[int, str]] = []
    for line in completed.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return [f"{name.strip()} {cumulative / 1000:.1f} ms" for cumulative, name in rows[:12]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--account", action="store_true", help="one lab account against swaks + curl")
    parser.add_argument("--before", type=Path, default=None, help="with --account: another source tree")
    parser.add_argument("--importtime", action="store_true", help="with --account: the largest imports")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="with --account: also this tree without its bytecode"
    )
    args = parser.parse_args()
    if args.account:
        return account_main(args)
    args.json = args.json or REPO / "bench" / "results" / "startup.json"
    commands = {
        "inboxcheck --version": [str(BIN / "inboxcheck"), "--version"],
        "checkdmarc --help": [str(BIN / "checkdmarc"), "--help"],
    }
    for argv in commands.values():
        if not Path(argv[0]).is_file():
            print(f"{argv[0]} is missing: pip install -e '.[bench]' into this interpreter", file=sys.stderr)
            return 2
    for _ in range(max(0, args.warmup)):  # page cache, .pyc files
        for argv in commands.values():
            _time_once(argv)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for round_no in range(max(1, args.runs)):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(_time_once(commands[name]))
    stats = {name: _stats(values) for name, values in samples.items()}
    ours, theirs = stats["inboxcheck --version"], stats["checkdmarc --help"]
    met_absolute = ours["median_ms"] < TARGET_MS
    met_relative = ours["median_ms"] <= theirs["median_ms"]
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "bin_dir": str(BIN),
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "stats": stats,
        "samples_ms": samples,
        "inboxcheck_imports_cumulative": _imports_at_start(BIN / "inboxcheck"),
        "target_ms": TARGET_MS,
        "met": met_absolute and met_relative,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{args.runs} runs each, console scripts in {BIN}\n")
    print("| command | median | p90 | min | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in stats.items():
        print(
            f"| `{name}` | {row['median_ms']:.0f} ms | {row['p90_ms']:.0f} ms | "
            f"{row['min_ms']:.0f} ms | {row['max_ms']:.0f} ms |"
        )
    print(
        f"\ninboxcheck median {ours['median_ms']:.0f} ms: target < {TARGET_MS:.0f} ms "
        f"{'met' if met_absolute else 'NOT met'}; "
        f"{theirs['median_ms'] / ours['median_ms']:.1f}x faster than checkdmarc --help "
        f"({'met' if met_relative else 'NOT met'})"
    )
    print("largest imports at start (cumulative):", ", ".join(result["inboxcheck_imports_cumulative"][:6]))
    print(f"raw figures: {args.json}")
    return 0 if result["met"] else 1


def _time_child(
    argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (user + sys of the child and whatever it waited for), exit code."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    if stdin is not None and process.stdin is not None:
        process.stdin.write(stdin.encode())
        process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, process.returncode


def _tools_once(payload: dict[str, Any], ca_file: Path) -> tuple[float, float, int]:
    """swaks (SMTP STARTTLS, AUTH PLAIN, quit) then curl (IMAPS login, LIST), as a person would."""
    swaks = _time_child(
        [
            "swaks",
            "--server",
            f"{payload['smtp_host']}:{payload['smtp_port']}",
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            str(ca_file),
            "--auth",
            "PLAIN",
            f"--auth-user={payload['smtp_username']}",
            "--quit-after",
            "AUTH",
            "--hide-all",
            "--auth-password",
        ],
        stdin=payload["smtp_password"] + "\n",
    )
    curl = _time_child(
        [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(ca_file),
            "--user",
            f"{payload['imap_username']}:{payload['imap_password']}",
            f"imaps://{payload['imap_host']}:{payload['imap_port']}/",
        ]
    )
    return swaks[0] + curl[0], swaks[1] + curl[1], swaks[2] or curl[2]


def _largest_imports(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=False, env=env
    )
    rows: list[tuple[int, int, str]] = []
    for line in completed.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    top = [row for row in rows if not row[2].startswith("    ")]  # top-level imports only
    top.sort(reverse=True)
    return [f"{name.strip()} {cumulative / 1000:.1f} ms" for cumulative, _, name in top[:15]]


def account_main(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    sys.path.insert(0, str(REPO))
    from lab import Lab

    with Lab(users=["bench1"]) as lab, tempfile.TemporaryDirectory(prefix="icstart-") as tmp:
        payload = lab.account("bench1", smtp="submission", imap="imaps")
        by_address = lab.account("bench1", smtp="submission", imap="imaps", host_style="address")
        account = Path(tmp) / "account.json"  # a private temp dir: the file holds the passwords
        account.write_text(json.dumps(payload), encoding="utf-8")
        common = [
            str(account),
            "--nameserver",
            f"{lab.nameserver[0]}:{lab.nameserver[1]}",
            "--ca-file",
            str(lab.ca_file),
            "--format",
            "json",
        ]
        logins = ["--only", "smtp", "--only", "imap"]
        trees = {"": REPO} if args.before is None else {"": REPO, "before: ": args.before.resolve()}
        runs: dict[str, Any] = {}
        for tree in trees.values():
            # Bytecode written as installing a wheel does: this sandbox sets PYTHONDONTWRITEBYTECODE,
            # and every start would otherwise compile inboxcheck's modules again (0.25 s of CPU).
            compileall.compile_dir(str(tree / "inboxcheck"), quiet=1)
        if args.no_bytecode:
            # The same source without any bytecode, and none written while it runs.
            bare = Path(tmp) / "no-bytecode"
            for part in ("inboxcheck", "presets"):
                shutil.copytree(REPO / part, bare / part, ignore=shutil.ignore_patterns("__pycache__"))
            trees["no bytecode: "] = bare
        for label, tree in trees.items():
            # Both trees the same way: python -m inboxcheck run in the tree (its own package first).
            env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
            check = [sys.executable, "-m", "inboxcheck", "check", *common]
            every = functools.partial(_time_child, check, env=env, cwd=tree)
            runs[f"{label}inboxcheck check (every check)"] = every
            if label != "no bytecode: ":
                logins_only = functools.partial(_time_child, [*check, *logins], env=env, cwd=tree)
                runs[f"{label}inboxcheck check --only smtp --only imap"] = logins_only
        # The tools use the system resolver, which does not know the lab's names: its addresses.
        runs["swaks + curl"] = functools.partial(_tools_once, by_address, lab.ca_file)
        if args.importtime:
            print("largest top-level imports of `inboxcheck check` (every check):")
            for line in _largest_imports(["-m", "inboxcheck", "check", *common]):
                print("  " + line)
        for run in runs.values():
            for _ in range(max(1, args.warmup)):
                run()
        names = list(runs)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        loads: list[float] = []
        for round_no in range(max(1, args.runs)):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu, code = runs[name]()
                if code not in (0, 3) and not name.startswith("swaks"):
                    raise RuntimeError(f"{name} exited {code}")
                if name.startswith("swaks") and code != 0:
                    raise RuntimeError(f"swaks or curl failed ({code})")
                samples[name].append((wall, cpu))
            loads.append(os.getloadavg()[0])
    tools_wall = statistics.median(w for w, _ in samples["swaks + curl"])
    tools_cpu = statistics.median(c for _, c in samples["swaks + curl"])
    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_average_median": statistics.median(loads),
        "medians": {
            name: {
                "wall_ms": 1000 * statistics.median(w for w, _ in values),
                "cpu_ms": 1000 * statistics.median(c for _, c in values),
                "wall_x_tools": statistics.median(w for w, _ in values) / tools_wall,
                "cpu_x_tools": statistics.median(c for _, c in values) / tools_cpu,
                # The best run of each: what load on the machine added least to.
                "best_wall_ms": 1000 * min(w for w, _ in values),
                "best_cpu_ms": 1000 * min(c for _, c in values),
            }
            for name, values in samples.items()
        },
    }
    path = args.json or REPO / "bench" / "results" / "startup-account.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(
        f"{args.runs} rounds, load average (1 min) median {result['load_average_median']:.1f} "
        f"on {os.cpu_count()} CPUs\n"
    )
    print(
        "| command | wall (median) | CPU user+sys (median) | wall / swaks+curl | CPU / swaks+curl "
        "| best wall | best CPU |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in result["medians"].items():
        print(
            f"| {name} | {row['wall_ms']:.0f} ms | {row['cpu_ms']:.0f} ms | "
            f"{row['wall_x_tools']:.2f}x | {row['cpu_x_tools']:.2f}x | "
            f"{row['best_wall_ms']:.0f} ms | {row['best_cpu_ms']:.0f} ms |"
        )
    print(f"raw figures: {path}")
    every = result["medians"]["inboxcheck check (every check)"]
    return 0 if every["wall_x_tools"] <= 2.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
