"""Batch checks: formats, bad lines, streaming output, resume after a kill, per-host bounds."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from inboxcheck._batch import BatchLine, read_batch, read_results, run_batch
from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._errors import InboxcheckError
from inboxcheck._options import CheckOptions, Family
from tests.helpers import CANARY, batch_user, custom_payload, google_payload, unreachable_for, write_jsonl

OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


def _jsonl(tmp_path: Path, rows: list[Any], name: str = "in.jsonl") -> Path:
    return write_jsonl(tmp_path / name, rows)


def test_jsonl_lines_keep_their_numbers_and_bad_lines_say_why(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(1), "", "{broken", batch_user(2, smtp_port=0), "[1]"])
    items = list(read_batch(path, env={}))
    assert [i.line for i in items] == [1, 3, 4, 5]
    assert items[0].account is not None
    assert items[1].error is not None and "line 3: not valid JSON" in items[1].error
    assert (
        items[2].error is not None
        and "smtp_port" in items[2].error
        and items[2].email == "user2@example.test"
    )
    assert items[3].error is not None and "JSON object" in items[3].error


def test_csv_uses_the_platform_field_names_and_types(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    payload = google_payload()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(payload)
        writer.writerow([str(v).lower() if isinstance(v, bool) else v for v in payload.values()])
        writer.writerow(["five-eight-seven" if k == "smtp_port" else v for k, v in payload.items()])
        writer.writerow(["too", "few"])
    first, second, third = read_batch(path, env={})
    assert first.account is not None and first.account.smtp_port == 587 and first.account.smtp_use_tls is True
    assert second.error is not None and "smtp_port" in second.error and second.line == 3
    assert third.error is not None and "2 columns" in third.error


def test_csv_with_unknown_columns_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("email,password\nx,y\n", encoding="utf-8")
    with pytest.raises(InboxcheckError, match="not account fields"):
        list(read_batch(path, env={}))


async def test_results_are_written_as_each_account_finishes(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(5)] + ["nope"])
    output = tmp_path / "out.jsonl"
    seen_in_file: list[int] = []

    def on_result(record: BatchLine) -> None:
        # Written before the callback runs: the file already holds this line.
        seen_in_file.append(len(read_results(output)))

    summary = await run_batch(path, options=OFFLINE, output=output, on_result=on_result, env={})
    assert seen_in_file == [1, 2, 3, 4, 5, 6]
    # "nope" is no JSON: a bad line, not an account.
    assert summary.verdicts == Counter({"pass": 5})
    assert summary.invalid_lines == [6]
    assert summary.exit_code == 2
    results = read_results(output)
    assert sorted(r["line"] for r in results) == [1, 2, 3, 4, 5, 6]
    assert CANARY not in output.read_text(encoding="utf-8")
    assert oct(output.stat().st_mode & 0o777) == "0o600"


async def test_an_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(1)])
    output = tmp_path / "out.jsonl"
    output.write_text('{"line": 1}\n', encoding="utf-8")
    with pytest.raises(InboxcheckError, match="--resume"):
        await run_batch(path, options=OFFLINE, output=output, env={})


async def test_resume_cuts_a_torn_line_and_checks_only_what_is_missing(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(6)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    assert json.loads(lines[0])["kind"] == "header"
    kept = [json.loads(line)["line"] for line in lines[1:4]]
    output.write_text("".join(lines[:4]) + lines[4][:40], encoding="utf-8")
    checked: list[int] = []
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, env={}, on_result=lambda r: checked.append(r.line)
    )
    assert sorted(checked) == sorted(set(range(1, 7)) - set(kept))
    assert summary.skipped_done == 3
    assert summary.total == 6
    assert sorted(r["line"] for r in read_results(output)) == [1, 2, 3, 4, 5, 6]


async def test_retry_errors_checks_again_only_what_could_not_tell(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(4)])
    output = tmp_path / "out.jsonl"
    down = {"user1@example.test", "user3@example.test"}

    spec = unreachable_for(down)
    first = await run_batch(path, options=OFFLINE, output=output, env={}, specs=spec)
    assert first.verdicts == Counter({"pass": 2, "error": 2}) and first.exit_code == 3
    down.clear()
    rerun: list[int] = []
    second = await run_batch(
        path,
        options=OFFLINE,
        output=output,
        resume=True,
        retry_errors=True,
        env={},
        specs=spec,
        on_result=lambda r: rerun.append(r.line),
    )
    assert sorted(rerun) == [2, 4]
    assert second.verdicts == Counter({"pass": 4}) and second.exit_code == 0
    results = read_results(output)
    assert sorted(r["line"] for r in results) == [1, 2, 3, 4]
    assert {r["verdict"] for r in results} == {"pass"}


async def test_concurrency_is_bounded_overall_and_per_host(tmp_path: Path) -> None:
    rows = [
        batch_user(i, smtp_host=f"smtp{i % 2}.example.test", imap_host=f"imap{i % 2}.example.test")
        for i in range(24)
    ]
    path = _jsonl(tmp_path, rows)
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def slow(ctx: CheckContext) -> Outcome:
        host = ctx.account.smtp_host
        active[host] += 1
        active["all"] += 1
        peak[host] = max(peak[host], active[host])
        peak["all"] = max(peak["all"], active["all"])
        await asyncio.sleep(0.02)
        active[host] -= 1
        active["all"] -= 1
        return Outcome(summary="ok")

    spec = [CheckSpec("test.slow", "Slow", Family.ACCOUNT, slow)]
    await run_batch(path, options=OFFLINE, concurrency=5, per_host=2, env={}, specs=spec)
    assert peak["all"] == 4  # two hosts, two each: the per-host bound binds before the overall one
    assert peak["smtp0.example.test"] == 2 and peak["smtp1.example.test"] == 2
    peak.clear()
    await run_batch(path, options=OFFLINE, concurrency=3, per_host=10, env={}, specs=spec)
    assert peak["all"] == 3


@pytest.mark.parametrize("one_per_mailbox", [True, False])
async def test_two_checks_of_one_mailbox_never_run_at_once(tmp_path: Path, one_per_mailbox: bool) -> None:
    # The same mailbox listed four times (an address in any case; not the same account, or it would
    # be checked once), among others on the same hosts.
    rows = [
        *(
            custom_payload(
                email_address="user1@example.test",
                smtp_username=name,
                imap_username=name,
                display_name=f"User One {n}",
            )
            for n, name in enumerate(("user1@example.test", "USER1@example.test") * 2)
        ),
        *(batch_user(i) for i in range(2, 6)),
    ]
    path = _jsonl(tmp_path, rows)
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def slow(ctx: CheckContext) -> Outcome:
        mailbox = ctx.account.imap_username.lower()
        active[mailbox] += 1
        active["all"] += 1
        peak[mailbox] = max(peak[mailbox], active[mailbox])
        peak["all"] = max(peak["all"], active["all"])
        await asyncio.sleep(0.05)
        active[mailbox] -= 1
        active["all"] -= 1
        return Outcome(summary="ok")

    spec = [CheckSpec("test.slow", "Slow", Family.ACCOUNT, slow)]
    summary = await run_batch(
        path, options=OFFLINE, concurrency=8, per_host=8, one_per_mailbox=one_per_mailbox, env={}, specs=spec
    )
    assert summary.total == 8
    if one_per_mailbox:
        assert peak["user1@example.test"] == 1
        assert peak["all"] >= 4, "other mailboxes still run alongside"
    else:
        assert peak["user1@example.test"] == 4


def _kill_batch_after(args: list[str], delay: float) -> int:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return proc.returncode


@pytest.mark.slow
def test_a_batch_killed_at_random_moments_ends_with_exactly_one_result_per_account(tmp_path: Path) -> None:
    count = 3000
    path = _jsonl(tmp_path, [batch_user(i) for i in range(count)])
    output = tmp_path / "out.jsonl"
    base = [
        sys.executable,
        "-m",
        "inboxcheck",
        "check",
        "--batch",
        str(path),
        "--only",
        "account",
        "--output",
        str(output),
    ]
    rng = random.Random(20261126)
    kills = 0
    deadline = time.monotonic() + 240
    returncode = _kill_batch_after(base, rng.uniform(0.4, 1.2))
    while returncode == -signal.SIGKILL and time.monotonic() < deadline:
        kills += 1
        returncode = _kill_batch_after([*base, "--resume"], rng.uniform(0.4, 1.2) + kills * 0.1)
    assert returncode == 0
    assert kills >= 1, "the first run finished before it could be killed; raise the account count"
    lines = [r["line"] for r in read_results(output)]
    assert Counter(lines) == Counter(range(1, count + 1))


async def test_a_batch_reads_the_check_registry_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inboxcheck import checks

    calls: list[int] = []
    real = checks.registered_checks

    def counting(families: Collection[Family] | None = None) -> list[CheckSpec]:
        calls.append(1)
        return real(families)

    monkeypatch.setattr(checks, "registered_checks", counting)
    path = _jsonl(tmp_path, [google_payload(email_address=f"u{n}@example.test") for n in range(5)])
    summary = await run_batch(path, options=OFFLINE, output=tmp_path / "out.jsonl", env={})
    assert summary.total == 5
    assert len(calls) == 1
