"""Benchmark: how long ``inboxcheck --version`` takes to start, against ``checkdmarc --help``.

    python bench/startup_bench.py [--runs 40] [--warmup 3]

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
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "startup.json")
    args = parser.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
