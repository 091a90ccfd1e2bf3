"""What ``bench/batch_bench.py`` measures, each method timed from spawn to exit: the bare-protocol
loop (``batch_bench.py --bare N`` in a subprocess), ``inboxcheck check --batch``, and swaks+curl; the
timer (wall clock, client CPU, peak RSS by ``wait4``) and the lab-log and login counts they share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
#: The benchmark whose ``--bare N`` runs the bare loop in a subprocess.
BATCH_BENCH = Path(__file__).resolve().with_name("batch_bench.py")
# Postfix: 'service "submission" (...) has reached its process limit'; Dovecot: 'process_limit (100)
# reached' or 'client_limit ... reached'.
LIMIT_PATTERN = re.compile(r"reached its process limit|process_limit \(\d+\) reached|client_limit.*reached")


# --- the bare-protocol loop (runs in a subprocess: ``--bare N``) --------------------------------------


async def bare_account(
    payload: dict[str, Any], context: ssl.SSLContext, *, same_steps: bool
) -> tuple[bool, bool]:
    import aioimaplib
    import aiosmtplib

    async def smtp() -> bool:
        client = aiosmtplib.SMTP(
            hostname=payload["smtp_host"],
            port=payload["smtp_port"],
            start_tls=True,
            tls_context=context,
            timeout=60,
        )
        await client.connect()
        try:
            await client.login(payload["smtp_username"], payload["smtp_password"])
        finally:
            await client.quit()
        return True

    async def imap() -> bool:
        client = aioimaplib.IMAP4_SSL(
            host=payload["imap_host"], port=payload["imap_port"], ssl_context=context, timeout=60
        )
        try:
            # aioimaplib asks CAPABILITY itself after the greeting, as inboxcheck's check does.
            await client.wait_hello_from_server()
            ok = (await client.login(payload["imap_username"], payload["imap_password"])).result == "OK"
            if ok and same_steps:
                ok = (await client.examine("INBOX")).result == "OK"
            return bool(ok)
        finally:
            # Always end the session: a connection left open holds a Dovecot imap-login process.
            with contextlib.suppress(Exception):
                await client.logout()

    results = await asyncio.gather(smtp(), imap(), return_exceptions=True)
    return results[0] is True, results[1] is True


async def bare_loop(
    payloads: list[dict[str, Any]], concurrency: int, ca_file: str, *, same_steps: bool
) -> dict[str, int]:
    context = ssl.create_default_context(cafile=ca_file)
    limit = asyncio.Semaphore(concurrency)
    counts = {"accounts": len(payloads), "smtp_ok": 0, "imap_ok": 0, "both_ok": 0}

    async def one(payload: dict[str, Any]) -> None:
        async with limit:
            smtp_ok, imap_ok = await bare_account(payload, context, same_steps=same_steps)
        counts["smtp_ok"] += smtp_ok
        counts["imap_ok"] += imap_ok
        counts["both_ok"] += smtp_ok and imap_ok

    await asyncio.gather(*(one(p) for p in payloads))
    return counts


# --- timing a subprocess ---------------------------------------------------------------------------


class CpuMeter:
    """Machine-wide busy share (/proc/stat) and this process's children's CPU over a span."""

    def __enter__(self) -> CpuMeter:
        self._proc = proc_stat()
        self._children = children_cpu()
        self._start = time.perf_counter()
        return self

    peak_rss_mb: float | None = None

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._start
        busy0, total0 = self._proc
        busy1, total1 = proc_stat()
        self.machine_busy = (busy1 - busy0) / max(1, total1 - total0)
        self.client_cpu = children_cpu() - self._children


def proc_stat() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[CpuMeter, str, str, int]:
    with CpuMeter() as meter, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        # wait4, not wait: the kernel's high-water mark of this child's resident memory.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    meter.peak_rss_mb = usage.ru_maxrss / 1024
    return meter, stdout, stderr, process.returncode


def figures(meter: CpuMeter, accounts: int) -> dict[str, float | None]:
    return {
        "seconds": meter.wall,
        "accounts_per_s": accounts / meter.wall,
        "client_cpu_s": meter.client_cpu,
        "machine_busy": meter.machine_busy,
        "peak_rss_mb": meter.peak_rss_mb,
        "load_average": os.getloadavg()[0],
    }


def run_bare(
    batch: Path, concurrency: int, ca_file: Path, accounts: int, *, same_steps: bool = False
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(BATCH_BENCH),
        "--bare",
        str(concurrency),
        "--batch",
        str(batch),
        "--ca",
        str(ca_file),
    ]
    meter, stdout, stderr, code = run_timed([*argv, "--same-steps"] if same_steps else argv)
    if code != 0:
        raise RuntimeError(f"the bare loop failed ({code}): {stderr[-2000:]}")
    counts = json.loads(stdout)
    method = "bare+same-steps" if same_steps else "bare"
    return {"method": method, "concurrency": concurrency, **figures(meter, accounts), **counts}


def run_inboxcheck(
    batch: Path,
    workdir: Path,
    *,
    concurrency: int,
    per_host: int,
    nameserver: str,
    ca_file: Path,
    accounts: int,
    logins_only: bool,
    source: Path | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One ``check --batch`` run; ``source``: the source tree whose ``inboxcheck`` runs (``python -m``
    from that tree; the code before a change is one), else the installed console script. ``profile``:
    run it under cProfile counting CPU time (``python -m cProfile`` counts the wall clock, which the
    machine's other load inflates), stats to that file."""
    output = workdir / f"out-{concurrency}-{per_host}-{'logins' if logins_only else 'all'}.jsonl"
    output.unlink(missing_ok=True)
    only = ["--only", "smtp", "--only", "imap"] if logins_only else []
    command = [str(BIN / "inboxcheck")] if source is None else [sys.executable, "-m", "inboxcheck"]
    if profile is not None:
        command = [sys.executable, "-c", _PROFILE, str(profile)]
    env = None if source is None else dict(os.environ, PYTHONPATH=str(source))
    argv = [
        *command,
        "check",
        "--batch",
        str(batch),
        "--output",
        str(output),
        "--format",
        "json",
        *only,
        "--nameserver",
        nameserver,
        "--ca-file",
        str(ca_file),
        "--concurrency",
        str(concurrency),
        "--per-host",
        str(per_host),
        "--timeout",
        "60",
        "--deadline",
        "600",
    ]
    meter, _, stderr, code = run_timed(argv, env=env, cwd=source)
    counts = {"accounts": 0, "smtp_ok": 0, "imap_ok": 0, "both_ok": 0}
    verdicts: dict[str, int] = {}
    with output.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if "kind" in record:
                continue  # the log's header (its digest key), a send test's line: no account
            counts["accounts"] += 1
            verdicts[record["verdict"]] = verdicts.get(record["verdict"], 0) + 1
            statuses = {c["name"]: c["status"] for c in (record.get("report") or {}).get("checks", [])}
            smtp_ok = statuses.get("smtp.login") == "pass"
            imap_ok = statuses.get("imap.login") == "pass"
            counts["smtp_ok"] += smtp_ok
            counts["imap_ok"] += imap_ok
            counts["both_ok"] += smtp_ok and imap_ok
    output.unlink()
    return {
        "method": "inboxcheck" if logins_only else "inboxcheck-all-checks",
        "source": str(source) if source else None,
        "concurrency": concurrency,
        "per_host": per_host,
        **figures(meter, accounts),
        **counts,
        "verdicts": verdicts,
        "exit_code": code,
        "summary": stderr.strip().splitlines()[-3:],
    }


_PROFILE = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
profiler = cProfile.Profile(time.process_time)
profiler.enable()
try:
    runpy.run_module("inboxcheck", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""


def print_profile(path: Path) -> None:
    import pstats

    print(f"profile of one inboxcheck run (CPU time): {path}", file=sys.stderr)
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(r"inboxcheck|pydantic", 50)


def run_tools(payloads: list[dict[str, Any]], ca_file: Path, accounts: int) -> dict[str, Any]:
    """swaks then curl for each account, one after another, as a person checking inboxes would."""
    counts = {"accounts": len(payloads), "smtp_ok": 0, "imap_ok": 0, "both_ok": 0}
    failures: list[str] = []
    with CpuMeter() as meter:
        for p in payloads:
            swaks = subprocess.run(
                [
                    "swaks",
                    "--server",
                    f"{p['smtp_host']}:{p['smtp_port']}",
                    "--tls",
                    "--tls-verify",
                    "--tls-ca-path",
                    str(ca_file),
                    "--auth",
                    "PLAIN",
                    f"--auth-user={p['smtp_username']}",
                    "--quit-after",
                    "AUTH",
                    "--hide-all",
                    # Without a value swaks asks for the password, here on stdin: its option parser
                    # takes any value beginning with "-" (as token_urlsafe passwords may) for an option.
                    "--auth-password",
                ],
                input=p["smtp_password"] + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
            curl = subprocess.run(
                [
                    "curl",
                    "--silent",
                    "--show-error",
                    "--cacert",
                    str(ca_file),
                    "--user",
                    f"{p['imap_username']}:{p['imap_password']}",
                    f"imaps://{p['imap_host']}:{p['imap_port']}/",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            smtp_ok, imap_ok = swaks.returncode == 0, curl.returncode == 0
            counts["smtp_ok"] += smtp_ok
            counts["imap_ok"] += imap_ok
            counts["both_ok"] += smtp_ok and imap_ok
            if not (smtp_ok and imap_ok) and len(failures) < 3:
                failures.append(
                    f"swaks {swaks.returncode} {swaks.stderr[-300:]} curl {curl.returncode} "
                    f"{curl.stderr[-300:]}"
                )
    rate = len(payloads) / meter.wall
    return {
        "method": "swaks+curl",
        "concurrency": 1,
        "sample": len(payloads),
        "seconds": meter.wall,
        "accounts_per_s": rate,
        "extrapolated_seconds_for_all": accounts / rate,
        "client_cpu_s": meter.client_cpu,
        "machine_busy": meter.machine_busy,
        **counts,
        "failures": failures,
    }


def limit_warnings(logs: dict[str, str]) -> list[str]:
    found: list[str] = []
    for path in logs.values():
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        found.extend(line.strip() for line in text.splitlines() if LIMIT_PATTERN.search(line))
    return found


def all_logged_in(row: dict[str, Any]) -> bool:
    return bool(row["both_ok"] == row["accounts"])
