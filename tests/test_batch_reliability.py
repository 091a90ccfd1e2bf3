"""Reliability: servers that stop in the middle of a batch, and the rerun that recovers their accounts;
and ``connect --batch`` killed (SIGKILL) and its log damaged between resumes.

The servers are scripted SMTP (STARTTLS) and IMAP (implicit TLS) peers on loopback that accept every
login; the checks are the real ``smtp`` and ``imap`` login checks with certificate verification.
The stop is deterministic: the batch runs one account at a time and the ``on_result`` callback,
called right after the N-th result is written, stops the servers synchronously, so every account
after the N-th meets a stopped server, whatever the machine's load. No sleeps: each run is bounded
by the checks' own timeout.

A stopped server shows itself in three ways. Two are "could not tell" (``error``), which
``--retry-errors`` reruns:

- *hung* (the process stopped, e.g. SIGSTOP, or wedged): the kernel still accepts the connection
  but nothing answers; the check times out.
- *dropping* (sessions cut at once): ``smtp.protocol.error`` / ``imap.protocol.error`` for a server
  that hung up, as opposed to one that answered nonsense (a failure).

The third, *refusing* (nothing listens: the daemon is gone, or the port is wrong), is a definite fact,
``smtp.connect.refused`` / ``imap.connect.refused`` (``fail``): a plain rerun checks those accounts
again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from inboxcheck._batch import BatchLine, read_results, run_batch
from inboxcheck._options import CheckOptions, Family
from lab.api_double import ApiDouble, Slow
from tests.helpers import batch_user, write_jsonl
from tests.peers import Peer, PeerCerts, PeerConn, Script
from tests.scenarios import ImapScript, SmtpScript, base_payload

ACCOUNTS = 6
STOP_AFTER = 4
LOGINS = frozenset({Family.SMTP, Family.IMAP})
# Each account after the stop costs one timeout (its SMTP and IMAP checks run concurrently). A healthy
# loopback login step takes milliseconds, so 2 s per step is a wide margin on two busy cores.
TIMEOUT = 2.0
OPTIONS = CheckOptions(timeout=TIMEOUT, deadline=60, families=LOGINS)
Stopped = Literal["smtp", "imap", "both"]
How = Literal["hang", "refuse", "drop"]


class Server:
    """A scripted peer on a port that stays the same across stops and restarts.

    All three stops act synchronously, so the very next connection meets the stopped server:
    ``hang()`` keeps accepting but answers nothing (a stopped or wedged process), ``refuse()`` closes
    the listening socket (the next connection attempt is refused), ``drop()`` cuts every new session
    right after accepting it. ``restart()`` brings the same script back on the same port.
    """

    def __init__(self, script: Script, *, tls: Any = None) -> None:
        self.script = script
        self.tls = tls
        self.port = 0
        self.state: How | None = None
        self.sessions = 0
        self._peer: Peer | None = None

    async def _session(self, conn: PeerConn) -> None:
        self.sessions += 1
        if self.state == "hang":
            await conn.until_closed()  # the client gives up after its timeout
        elif self.state == "drop":
            conn.abort()
        else:
            await self.script(conn)

    async def start(self) -> None:
        self._peer = Peer(self._session, tls=self.tls, port=self.port)
        await self._peer.__aenter__()
        self.port = self._peer.port

    def stop_now(self, how: How) -> None:
        self.state = how
        if how == "refuse":
            # Peer has no public way to stop listening without awaiting; closing the asyncio server
            # is synchronous and refuses the next connection at once.
            assert self._peer is not None and self._peer._server is not None
            self._peer._server.close()

    async def stop(self) -> None:
        if self._peer is not None:
            peer, self._peer = self._peer, None
            await peer.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        self.state = None
        await self.start()


def _batch_file(tmp_path: Path, smtp: Server, imap: Server) -> Path:
    rows = []
    for i in range(ACCOUNTS):
        address = f"user{i}@peer.test"
        rows.append(
            base_payload(
                email_address=address,
                smtp_username=address,
                imap_username=address,
                smtp_port=smtp.port,
                imap_port=imap.port,
            )
        )
    path = tmp_path / "accounts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


async def _servers(certs: PeerCerts) -> tuple[Server, Server]:
    smtp = Server(SmtpScript(tls=certs.server_context()))
    imap = Server(ImapScript(implicit=True), tls=certs.server_context())
    await smtp.start()
    try:
        await imap.start()
    except BaseException:
        await smtp.stop()
        raise
    return smtp, imap


def _stop_after(count: int, servers: list[Server], *, how: How) -> Any:
    seen: list[int] = []

    def on_result(record: BatchLine) -> None:
        seen.append(record.line)
        if len(seen) == count:
            for server in servers:
                server.stop_now(how)

    return on_result, seen


def _pick(stopped: Stopped, smtp: Server, imap: Server) -> list[Server]:
    return {"smtp": [smtp], "imap": [imap], "both": [smtp, imap]}[stopped]


def _check_interrupted_run(output: Path, first: Any) -> set[int]:
    """The first run: the accounts before the stop pass, every later one is 'could not tell'."""
    assert first.verdicts == Counter({"pass": STOP_AFTER, "error": ACCOUNTS - STOP_AFTER})
    assert first.exit_code == 3
    results = read_results(output)
    assert Counter(r["line"] for r in results) == Counter(range(1, ACCOUNTS + 1))
    by_line = {r["line"]: r for r in results}
    errors = {line for line, r in by_line.items() if r["verdict"] == "error"}
    # One account at a time, in file order: the stop falls exactly after the STOP_AFTER-th line.
    assert errors == set(range(STOP_AFTER + 1, ACCOUNTS + 1))
    for line in errors:
        codes = {f["code"] for c in by_line[line]["report"]["checks"] for f in c["findings"]}
        assert codes, f"line {line}: an error verdict without a finding saying why"
    return errors


def _check_recovered(output: Path) -> None:
    results = read_results(output)
    assert Counter(r["line"] for r in results) == Counter(range(1, ACCOUNTS + 1))
    assert {r["verdict"] for r in results} == {"pass"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "stopped"),
    [
        ("hang", "smtp"),
        ("hang", "imap"),
        ("hang", "both"),
        ("drop", "both"),
    ],
)
async def test_stopped_servers_give_error_and_a_rerun_of_only_those_recovers_them(
    tmp_path: Path, stopped: Stopped, how: How
) -> None:
    certs = PeerCerts()
    smtp, imap = await _servers(certs)
    try:
        path = _batch_file(tmp_path, smtp, imap)
        output = tmp_path / "results.jsonl"
        context = certs.client_context()
        on_result, seen = _stop_after(STOP_AFTER, _pick(stopped, smtp, imap), how=how)
        first = await run_batch(
            path,
            options=OPTIONS,
            output=output,
            concurrency=1,
            ssl_context=context,
            on_result=on_result,
            env={},
        )
        errors = _check_interrupted_run(output, first)
        assert len(seen) == ACCOUNTS

        for server in _pick(stopped, smtp, imap):
            await server.restart()
        sessions_before = smtp.sessions, imap.sessions
        rerun: list[int] = []
        second = await run_batch(
            path,
            options=OPTIONS,
            output=output,
            resume=True,
            retry_errors=True,
            concurrency=4,
            ssl_context=context,
            on_result=lambda r: rerun.append(r.line),
            env={},
        )
        assert sorted(rerun) == sorted(errors)
        assert second.skipped_done == STOP_AFTER
        assert second.verdicts == Counter({"pass": ACCOUNTS}) and second.exit_code == 0
        # Only the affected accounts logged in again: one SMTP and one IMAP session each.
        assert (smtp.sessions - sessions_before[0], imap.sessions - sessions_before[1]) == (
            len(errors),
            len(errors),
        )
        _check_recovered(output)
    finally:
        await smtp.stop()
        await imap.stop()


@pytest.mark.slow
@pytest.mark.slow
async def test_refusing_servers_are_a_definite_failure_of_the_accounts_after_the_stop(tmp_path: Path) -> None:
    certs = PeerCerts()
    smtp, imap = await _servers(certs)
    try:
        path = _batch_file(tmp_path, smtp, imap)
        output = tmp_path / "results.jsonl"
        on_result, seen = _stop_after(STOP_AFTER, [smtp, imap], how="refuse")
        first = await run_batch(
            path,
            options=OPTIONS,
            output=output,
            concurrency=1,
            ssl_context=certs.client_context(),
            on_result=on_result,
            env={},
        )
        assert len(seen) == ACCOUNTS
        assert first.verdicts == Counter({"pass": STOP_AFTER, "fail": ACCOUNTS - STOP_AFTER})
        by_line = {r["line"]: r for r in read_results(output)}
        for line in range(STOP_AFTER + 1, ACCOUNTS + 1):
            codes = {f["code"] for c in by_line[line]["report"]["checks"] for f in c["findings"]}
            assert codes == {"smtp.connect.refused", "imap.connect.refused"}, line
    finally:
        await smtp.stop()
        await imap.stop()


async def test_the_cli_reruns_only_the_errors_with_resume_and_retry_errors(tmp_path: Path) -> None:
    """The same recovery through the real command line (a subprocess), with the peers' CA as --ca-file."""
    certs = PeerCerts()
    ca_file = tmp_path / "peer-ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    smtp, imap = await _servers(certs)
    try:
        path = _batch_file(tmp_path, smtp, imap)
        output = tmp_path / "results.jsonl"
        on_result, _ = _stop_after(STOP_AFTER, [smtp, imap], how="hang")
        first = await run_batch(
            path,
            options=OPTIONS,
            output=output,
            concurrency=1,
            ssl_context=certs.client_context(),
            on_result=on_result,
            env={},
        )
        errors = _check_interrupted_run(output, first)
        await smtp.restart()
        await imap.restart()
        sessions_before = smtp.sessions
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "inboxcheck",
            "check",
            "--batch",
            str(path),
            "--output",
            str(output),
            "--resume",
            "--retry-errors",
            "--only",
            "smtp",
            "--only",
            "imap",
            "--ca-file",
            str(ca_file),
            "--timeout",
            str(TIMEOUT),
            "--format",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # The peers answer from this event loop, so wait for the subprocess without blocking it.
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
        assert stdout == b""  # with --output, results go to the file only
        assert f"{ACCOUNTS} accounts: {ACCOUNTS} pass" in stderr.decode()
        assert f"{STOP_AFTER} of them were already in the output file" in stderr.decode()
        assert smtp.sessions - sessions_before == len(errors)
        _check_recovered(output)
    finally:
        await smtp.stop()
        await imap.stop()


KEY = "cs_test_" + "r" * 24


def _run_until(args: list[str], env: dict[str, str], stop: Callable[[], bool]) -> int:
    """Run ``args``; SIGKILL it as soon as ``stop()`` holds (or let it finish); its exit code."""
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) as proc:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if stop():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        else:
            if proc.returncode is None:
                proc.kill()
        return proc.wait(timeout=30)


def _log_lines(output: Path) -> int:
    return output.read_bytes().count(b"\n") if output.exists() else 0


@pytest.mark.slow
def test_connect_batch_killed_at_random_points_sends_each_create_at_most_once_and_reports_the_unknown(
    tmp_path: Path,
) -> None:
    """SIGKILL at random points of the check and create phases (at least 20 kills), a resume after
    each, against a platform that counts every create it is sent and takes a moment over each (so
    kills land between a create leaving and its answer being logged). No create is ever sent twice;
    every one whose answer never reached the log is reported as an unknown outcome by the next run;
    only ``--retry-unknown`` sends those again, with the key they first had."""
    count = 60
    rows = [batch_user(i) for i in range(count)]
    path = write_jsonl(tmp_path / "accounts.jsonl", rows)
    output = tmp_path / "log.jsonl"
    rng = random.Random(20261207)
    env = {**os.environ, "COLDSEND_API_KEY": KEY}
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        api.misbehave(*[Slow(0.03)] * (2 * count))
        args = [
            sys.executable,
            "-m",
            "inboxcheck",
            "connect",
            "--batch",
            str(path),
            "--output",
            str(output),
            "--only",
            "account",
            "--api-url",
            api.url,
        ]
        kills = runs = 0
        while kills < 22 and runs < 80:
            # Half the kills at a random line of the log (either phase), half while a create is on
            # the wire (the platform has the request and is taking its moment over it).
            by_line = rng.random() < 0.5
            target = (_log_lines(output) if by_line else api.connections) + rng.randint(
                1, 5 if by_line else 3
            )

            def stop(by_line: bool = by_line, target: int = target) -> bool:
                return (_log_lines(output) if by_line else api.connections) >= target

            code = _run_until([*args, *(["--resume"] if runs else [])], env, stop)
            runs += 1
            assert code in (0, 8, -signal.SIGKILL), f"run {runs} exited {code}"
            kills += code == -signal.SIGKILL
            posted = Counter(r.body["email_address"] for r in api.creates())
            assert max(posted.values(), default=0) <= 1, f"a create was sent twice: {posted.most_common(3)}"
        final = subprocess.run([*args, "--resume"], capture_output=True, env=env, timeout=180, check=False)
        records = read_results(output)
        sent = {r["email_address"]: r for r in records if r.get("state") == "sent"}
        answered = {r["email_address"] for r in records if r.get("state") == "answered"}
        unknown = set(sent) - answered
        posted = Counter(r.body["email_address"] for r in api.creates())
        assert max(posted.values()) == 1
        # Written ahead: a kill between the "sent" line and the request leaves one never posted,
        # which is still unknown to the run (it cannot tell).
        assert set(posted) <= set(sent) == {row["email_address"] for row in rows}
        assert final.returncode == (8 if unknown else 0), final.stderr.decode()
        reported = {
            line.split()[4].rstrip(":")
            for line in final.stdout.decode().splitlines()
            if "create.outcome_unknown" in line
        }
        assert reported == unknown
        # The user looked and says: send them again. Same key, so the platform recognises them.
        retried = subprocess.run(
            [*args, "--resume", "--retry-unknown"], capture_output=True, env=env, timeout=180, check=False
        )
        assert retried.returncode == 0, retried.stderr.decode()
        again = api.creates()[len(posted) :]
        assert {r.body["email_address"] for r in again} == unknown
        assert all(r.idempotency_key == sent[r.body["email_address"]]["idempotency_key"] for r in again)
        assert len(api.accounts) == count
    assert kills >= 20, f"only {kills} of {runs} runs were killed before they finished"
