"""Benchmark: ``inboxcheck serve`` against ``check_sync`` in one process, one CLI process per
account, and ``check --batch``.

    python bench/service_bench.py [--checks 200] [--cli-checks 40] [--accounts 1000]
                                  [--concurrency 50] [--rounds 2] [--no-netns]

1. Latency (issue 20): one lab account checked ``--checks`` times, one check at a time, in
   alternating pairs (service, then in-process; the next pair the other way round): p50 and p99 of
   each. The service is a real ``inboxcheck serve`` process on loopback, called over a kept-alive
   httpx connection; in-process is ``inboxcheck.check_sync`` in this process (a fresh DNS cache and
   TLS context a call, as a library user gets). One ``inboxcheck check FILE --format json`` process a
   check is measured ``--cli-checks`` times (about 1 s each), interleaved. Target: service p50 and
   p99 within 1.2 x in-process.
2. Throughput: ``--accounts`` distinct lab accounts posted to the service ``--concurrency`` at a time
   (server ``--concurrency`` the same) against ``inboxcheck check --batch FILE --concurrency N
   --per-host N`` (the lab is one host), alternating, ``--rounds`` each; accounts per second, medians.
   Target: service >= 0.9 x batch.

Every check runs every family (account, DNS, SMTP, IMAP) against the lab (NSD, Postfix, Dovecot) with
``--nameserver`` and ``--ca-file``; every run must log every account in, or the figures are refused.
The machine's load average is printed with each figure (other work shares the cores).
Only runs when invoked; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._netns import in_namespace  # noqa: E402

TOKEN = "bench-token-not-secret"
TARGET_LATENCY = 1.2
TARGET_THROUGHPUT = 0.9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    def __init__(self, nameserver: str, ca_file: Path, concurrency: int) -> None:
        import httpx

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "inboxcheck", "serve", "--port", str(self.port), "--nameserver", nameserver,
            "--ca-file", str(ca_file), "--concurrency", str(concurrency), "--queue", str(concurrency * 4),
            "--timeout", "60", "--deadline", "600",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "INBOXCHECK_API_TOKENS": TOKEN},
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the service did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(_percentile(values, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


def _logged_in(report: dict[str, Any]) -> bool:
    statuses = {c["name"]: c["status"] for c in report.get("checks", [])}
    return statuses.get("smtp.login") == "pass" and statuses.get("imap.login") == "pass"


def latency(lab: Any, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import httpx

    import inboxcheck
    from inboxcheck._options import CheckOptions, parse_nameserver

    nameserver = f"{lab.nameserver[0]}:{lab.nameserver[1]}"
    account = lab.account("u0000")
    options = CheckOptions(
        nameservers=(parse_nameserver(nameserver),), ca_file=lab.ca_file, timeout=60, deadline=600
    )
    path = workdir / "account.json"
    path.write_text(json.dumps(account), encoding="utf-8")
    cli = [
        str(Path(sys.executable).parent / "inboxcheck"), "check", str(path), "--format", "json",
        "--nameserver", nameserver, "--ca-file", str(lab.ca_file), "--timeout", "60",
    ]  # fmt: skip
    server = _Server(nameserver, lab.ca_file, 50)
    times: dict[str, list[float]] = {"service": [], "in_process": [], "cli_process": []}
    loads: list[float] = []
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as http:

            def by_service() -> bool:
                response = http.post("/v1/check", json=account)
                return response.status_code == 200 and _logged_in(response.json())

            def in_process() -> bool:
                return _logged_in(inboxcheck.check_sync(account, options=options).model_dump(mode="json"))

            def by_cli() -> bool:
                done = subprocess.run(cli, capture_output=True, check=False)
                return _logged_in(json.loads(done.stdout))

            by_service()  # warm-up: imports, first connections
            in_process()
            every = max(1, args.checks // max(1, args.cli_checks))
            for i in range(args.checks):
                pair = [("service", by_service), ("in_process", in_process)]
                if i % 2:
                    pair.reverse()
                if i % every == 0 and len(times["cli_process"]) < args.cli_checks:
                    pair.append(("cli_process", by_cli))
                for name, call in pair:
                    started = time.perf_counter()
                    ok = call()
                    times[name].append(time.perf_counter() - started)
                    if not ok:
                        raise RuntimeError(f"{name}: the account did not log in")
                loads.append(os.getloadavg()[0])
    finally:
        server.stop()
    result: dict[str, Any] = {name: _summary(values) for name, values in times.items()}
    result["load_average"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    result["ratio_p50"] = round(result["service"]["p50_ms"] / result["in_process"]["p50_ms"], 3)
    result["ratio_p99"] = round(result["service"]["p99_ms"] / result["in_process"]["p99_ms"], 3)
    return result


async def _post_all(url: str, accounts: list[dict[str, Any]], concurrency: int) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for account in accounts:
        queue.put_nowait(account)
    good = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal good
        while not queue.empty():
            account = queue.get_nowait()
            response = await http.post("/v1/check", json=account)
            good += response.status_code == 200 and _logged_in(response.json())

    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600, limits=limits
    ) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return good


async def _post_all_raw(port: int, accounts: list[dict[str, Any]], concurrency: int) -> int:
    """The same posts from a lean client (HTTP/1.1 keep-alive over asyncio streams, a few dozen lines),
    as a platform's Go or Node client costs next to httpx."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for account in accounts:
        queue.put_nowait(account)
    good = 0

    async def worker() -> None:
        nonlocal good
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                body = json.dumps(queue.get_nowait()).encode()
                writer.write(
                    b"POST /v1/check HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                report = json.loads(await reader.readexactly(length))
                good += status == 200 and _logged_in(report)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return good


def throughput(lab: Any, args: argparse.Namespace, workdir: Path, names: list[str]) -> dict[str, Any]:
    nameserver = f"{lab.nameserver[0]}:{lab.nameserver[1]}"
    accounts = [lab.account(name) for name in names]
    batch = workdir / "accounts.jsonl"
    batch.write_text("".join(json.dumps(a) + "\n" for a in accounts), encoding="utf-8")
    n, c = len(accounts), args.concurrency
    rows: list[dict[str, Any]] = []

    def run_service(client: str) -> dict[str, Any]:
        server = _Server(nameserver, lab.ca_file, c)
        try:
            server_cpu = server.cpu_seconds()
            client_cpu = time.process_time()
            started = time.perf_counter()
            if client == "httpx":
                good = asyncio.run(_post_all(server.url, accounts, c))
            else:
                good = asyncio.run(_post_all_raw(server.port, accounts, c))
            seconds = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu
            server_cpu = server.cpu_seconds() - server_cpu
        finally:
            server.stop()
        return {
            "method": f"service ({client} client)",
            "seconds": seconds,
            "logged_in": good,
            "server_cpu_s": round(server_cpu, 2),
            "client_cpu_s": round(client_cpu, 2),
        }

    def run_batch() -> dict[str, Any]:
        output = workdir / "out.jsonl"
        output.unlink(missing_ok=True)
        argv = [
            str(Path(sys.executable).parent / "inboxcheck"), "check", "--batch", str(batch), "--output",
            str(output), "--format", "json", "--nameserver", nameserver, "--ca-file", str(lab.ca_file),
            "--concurrency", str(c), "--per-host", str(c), "--timeout", "60", "--deadline", "600",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line]
        good = sum(_logged_in(line.get("report") or {}) for line in lines)
        return {
            "method": "check --batch",
            "seconds": seconds,
            "logged_in": good,
            "server_cpu_s": round(cpu, 2),
        }

    methods: list[Callable[[], dict[str, Any]]] = [
        run_batch,
        *(functools.partial(run_service, client) for client in args.clients.split(",")),
    ]
    for round_ in range(args.rounds):
        order = methods if round_ % 2 == 0 else methods[::-1]
        for run in order:
            row = run()
            row |= {
                "round": round_,
                "accounts_per_s": round(n / row["seconds"], 1),
                "load": os.getloadavg()[0],
            }
            print(json.dumps(row), file=sys.stderr)
            if row["logged_in"] != n:
                raise RuntimeError(f"{row['method']} logged {row['logged_in']} of {n} accounts in")
            rows.append(row)
    batch_rate = statistics.median(r["accounts_per_s"] for r in rows if r["method"] == "check --batch")
    result: dict[str, Any] = {
        "accounts": n,
        "concurrency": c,
        "rows": rows,
        "batch_accounts_per_s": batch_rate,
    }
    for client in args.clients.split(","):
        rate = statistics.median(
            r["accounts_per_s"] for r in rows if r["method"] == f"service ({client} client)"
        )
        result[f"service_{client}_accounts_per_s"] = rate
        result[f"ratio_{client}"] = round(rate / batch_rate, 3)
    result["ratio"] = max(v for k, v in result.items() if k.startswith("ratio_"))
    return result


def _inside(args: argparse.Namespace) -> dict[str, Any]:
    from lab import Lab

    names = [f"u{i:04d}" for i in range(max(args.accounts, 1))]
    with Lab(users=names) as lab, tempfile.TemporaryDirectory(prefix="icserve-") as tmp:
        workdir = Path(tmp)
        print(f"lab with {len(names)} users up; load {os.getloadavg()}", file=sys.stderr)
        result: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        if args.checks:
            result["latency"] = latency(lab, args, workdir)
            print(json.dumps(result["latency"], indent=2), file=sys.stderr)
        if args.accounts and args.rounds:
            result["throughput"] = throughput(lab, args, workdir, names)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--cli-checks", type=int, default=40)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="httpx,raw", help="service clients to measure: httpx, raw")
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "service.json")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside and not args.no_netns and os.geteuid() == 0 and shutil.which("ip"):
        passthrough = [
            "--checks", str(args.checks), "--cli-checks", str(args.cli_checks),
            "--accounts", str(args.accounts), "--concurrency", str(args.concurrency),
            "--rounds", str(args.rounds), "--json", str(args.json), "--clients", args.clients,
        ]  # fmt: skip
        return in_namespace("icserve", __file__, passthrough)
    result = _inside(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    latency_ok = (
        "latency" not in result
        or max(result["latency"]["ratio_p50"], result["latency"]["ratio_p99"]) <= TARGET_LATENCY
    )
    throughput_ok = "throughput" not in result or result["throughput"]["ratio"] >= TARGET_THROUGHPUT
    return 0 if latency_ok and throughput_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
