"""Issue 17: the gate judges the line it sends, a create goes out at most once unless the user says
otherwise, and the results log is a file that cannot be turned against its own run.

- A log record names the exact account it judged (a keyed digest); a resume matches by digest, so
  an edited line is checked again and a line repeated is checked and created once.
- Creates are written ahead (``sent``, then ``answered``): an interrupted create, an unknown
  outcome or a damaged create line is reported, never sent again without ``retry_unknown``; a 429
  or an unreachable platform leaves the account pending, and a resume sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inboxcheck._batch import read_results, run_batch
from inboxcheck._options import CheckOptions, Family
from inboxcheck.cli import cli
from inboxcheck.platform.batch import connect_batch
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.key import ApiKey
from lab.api_double import ApiDouble, RateLimit, Stall
from tests.helpers import CANARY, batch_user, custom_payload, write_jsonl

KEY = "cs_test_" + "g" * 24
OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


def _replace_line(path: Path, number: int, row: dict[str, Any]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = json.dumps(row) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def _posted(api: ApiDouble) -> Counter[str]:
    return Counter(r.body["email_address"].lower() for r in api.creates() if isinstance(r.body, dict))


def _client(api: ApiDouble, **kwargs: Any) -> PlatformClient:
    return PlatformClient(ApiKey.parse(KEY), base_url=api.url, **kwargs)


# -- the gate judges the line it sends --------------------------------------------------------------


async def test_check_resume_checks_again_a_line_replaced_since_it_was_checked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    _replace_line(path, 2, batch_user(9, smtp_host="nonexistent.invalid"))
    checked: list[int] = []
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, env={}, on_result=lambda r: checked.append(r.line)
    )
    assert checked == [2]
    assert summary.skipped_done == 2
    latest = {r["line"]: r for r in read_results(output)}
    assert latest[2]["email_address"] == "user9@example.test"


async def test_connect_resume_never_sends_a_replaced_line_on_the_old_lines_pass(tmp_path: Path) -> None:
    """Line 2 passed, then is replaced by an account that fails its checks: it is not created."""
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    _replace_line(path, 2, batch_user(9, imap_port=143, smtp_password="wrong-" + CANARY))
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            summary = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert _posted(api) == Counter({"user1@example.test": 1, "user3@example.test": 1})
    assert summary.blocked == 1
    assert CANARY not in output.read_text(encoding="utf-8")


async def test_the_same_account_twice_is_checked_and_created_once(tmp_path: Path) -> None:
    upper = batch_user(1)
    upper.update(email_address="USER1@Example.Test", smtp_username="User1@example.test")
    rows = [batch_user(1), batch_user(2), upper]
    path, output = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            summary = await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
            again = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert _posted(api) == Counter({"user1@example.test": 1, "user2@example.test": 1})
    assert summary.check.duplicates == [(3, 1)]
    assert summary.exit_code == 0 and again.exit_code == 0
    assert "line 3 = line 1" in summary.describe()
    (duplicate,) = [r for r in read_results(output) if r.get("verdict") == "duplicate"]
    assert duplicate["line"] == 3 and duplicate["duplicate_of"] == 1


async def test_the_digest_is_keyed_per_log_and_covers_the_password(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    digests = []
    for name in ("a.jsonl", "b.jsonl"):
        await run_batch(path, options=OFFLINE, output=tmp_path / name, env={})
        header, record = (json.loads(line) for line in (tmp_path / name).read_text().splitlines())
        assert header["kind"] == "header" and len(bytes.fromhex(header["digest_key"])) == 32
        digests.append(record["digest"])
    assert digests[0] != digests[1]  # another log, another key: no plain hash to test guesses on
    _replace_line(path, 1, batch_user(1, smtp_password="another-" + CANARY))
    checked: list[int] = []
    await run_batch(
        path,
        options=OFFLINE,
        output=tmp_path / "a.jsonl",
        resume=True,
        env={},
        on_result=lambda r: checked.append(r.line),
    )
    assert checked == [1]


async def test_an_old_log_without_digests_is_checked_again_and_said_once(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    old = [json.loads(line) for line in output.read_text().splitlines()][1:]
    output.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "digest"}) + "\n" for r in old))
    checked: list[int] = []
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, env={}, on_result=lambda r: checked.append(r.line)
    )
    assert sorted(checked) == [1, 2, 3]
    assert summary.describe().count("older inboxcheck") == 1


# -- at most once -----------------------------------------------------------------------------------


async def _interrupted_run(path: Path, output: Path, api: ApiDouble, *, bulk: bool = False) -> None:
    """A run cancelled while its first create call is on the wire (the platform acted on it)."""
    api.misbehave(Stall())
    async with _client(api) as client:
        run = asyncio.ensure_future(
            connect_batch(path, output=output, client=client, options=OFFLINE, env={}, bulk=bulk)
        )
        await api.wait_for_requests(1)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


async def test_an_interrupted_create_is_reported_unknown_not_sent_again(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        await _interrupted_run(path, output, api)
        (sent,) = [r for r in read_results(output) if r.get("kind") == "create"]
        assert sent["state"] == "sent" and sent["line"] == 1
        async with _client(api) as client:
            told: list[Any] = []
            resumed = await connect_batch(
                path,
                output=output,
                client=client,
                options=OFFLINE,
                resume=True,
                env={},
                on_create=told.append,
            )
        assert _posted(api) == Counter({f"user{i}@example.test": 1 for i in (1, 2, 3)})
        assert [u.line for u in resumed.unknown] == [1]
        (unknown,) = resumed.unknown
        assert unknown.finding is not None and unknown.finding.code == "create.outcome_unknown"
        assert unknown.idempotency_key == sent["idempotency_key"]
        assert unknown.finding.evidence["sent_at"] and "--retry-unknown" in (unknown.finding.fix or "")
        assert resumed.exit_code == 8 and resumed.creates == Counter({"created": 2})
        assert any(line.line == 1 for line in told)
        # The user looked, found nothing, and says so: the same key goes again.
        async with _client(api) as client:
            retried = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, retry_unknown=True, env={}
            )
        last = api.creates()[-1]
        assert last.idempotency_key == sent["idempotency_key"] and last.outcome == "replayed"
        assert retried.exit_code == 0 and not retried.unknown


async def test_an_interrupted_bulk_call_is_never_sent_twice_without_the_users_say(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        await _interrupted_run(path, output, api, bulk=True)
        async with _client(api) as client:
            resumed = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, bulk=True, env={}
            )
        assert len([r for r in api.log if r.path.endswith("/bulk")]) == 1
        assert sorted(u.line for u in resumed.unknown) == [1, 2, 3] and resumed.exit_code == 8
        async with _client(api) as client:
            retried = await connect_batch(
                path,
                output=output,
                client=client,
                options=OFFLINE,
                resume=True,
                bulk=True,
                retry_unknown=True,
                env={},
            )
        bulk = [r for r in api.log if r.path.endswith("/bulk")]
        assert len(bulk) == 2 and bulk[0].idempotency_key == bulk[1].idempotency_key
        assert retried.exit_code == 0 and len(api.accounts) == 3


async def test_a_429_or_an_unreachable_platform_leaves_the_account_pending_and_a_resume_sends_it(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        # A Retry-After longer than the client waits: rate limited at once, nothing acted on.
        api.misbehave(RateLimit("3600"))
        async with _client(api) as client:
            first = await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
        assert first.creates == Counter({"created": 2, "rate_limited": 1})
        assert first.pending == 1 and first.exit_code != 0
        assert "1 account(s) passed and are not created yet (pending)" in first.describe()
        async with PlatformClient(ApiKey.parse(KEY), base_url="http://127.0.0.1:9", max_retries=0) as nowhere:
            second = await connect_batch(
                path, output=output, client=nowhere, options=OFFLINE, resume=True, env={}
            )
        assert second.creates == Counter({"unreachable": 1}) and second.pending == 1 and second.exit_code != 0
        async with _client(api) as client:
            third = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert third.creates == Counter({"created": 1}) and third.pending == 0 and third.exit_code == 0
        assert len(api.accounts) == 3
        assert _posted(api) == Counter(
            {"user1@example.test": 2, "user2@example.test": 1, "user3@example.test": 1}
        )


async def test_a_damaged_create_line_is_an_unknown_outcome_never_a_second_post(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
        lines = output.read_bytes().splitlines(keepends=True)
        # Line 2's create, its last bytes overwritten (its sent line lost too): what a bad disk does.
        for index, raw in enumerate(lines):
            if b'"kind":"create"' in raw and b'"line":2,' in raw:
                lines[index] = raw[:120] + b"\x00" * (len(raw) - 121) + b"\n"
        output.write_bytes(b"".join(lines))
        async with _client(api) as client:
            resumed = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert _posted(api) == Counter({f"user{i}@example.test": 1 for i in (1, 2, 3)})
        assert [u.line for u in resumed.unknown] == [2] and resumed.exit_code == 8


async def test_a_damaged_line_naming_no_account_holds_back_every_create(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(i) for i in range(1, 4)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    with output.open("ab") as log:
        log.write(b"\x00" * 40 + b"\n")  # it may have been a create: nobody can tell
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            held = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
            assert api.creates() == [] and held.exit_code == 8 and held.held_by == [5]
            assert "--retry-unknown" in held.describe()
            told = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, retry_unknown=True, env={}
            )
        assert told.exit_code == 0 and len(api.accounts) == 3


def test_ctrl_c_during_one_connect_prints_the_key_and_that_it_was_sent(tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    account.write_text(json.dumps(custom_payload()), encoding="utf-8")
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        api.misbehave(Stall())
        command = [sys.executable, "-m", "inboxcheck", "connect", str(account), "--only", "account"]
        command += ["--api-url", api.url]
        env = {**os.environ, "COLDSEND_API_KEY": KEY}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            for _ in range(3000):
                if api.creates() or proc.poll() is not None:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.02)
            assert api.creates(), "the create was never sent"
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # reaped, pipes closed: nothing leaks into the next test
                proc.kill()
                proc.communicate()
        key = api.creates()[0].idempotency_key
    assert proc.returncode == 130, stderr
    assert "sent, no answer yet" in stderr and f"Idempotency-Key {key}" in stderr
    assert "Traceback" not in stderr and CANARY not in stderr


def test_the_cli_reports_unknown_outcomes_and_takes_retry_unknown(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    args = ["connect", "--batch", str(path), "--output", str(output), "--only", "account"]
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        run = [*args, "--api-url", api.url]
        assert (
            CliRunner().invoke(cli, [*run, "--retry-unknown"], env={"COLDSEND_API_KEY": KEY}).exit_code == 2
        )
        first = CliRunner().invoke(cli, run, env={"COLDSEND_API_KEY": KEY})
        assert first.exit_code == 0, first.output
        records = output.read_text().splitlines()
        # As if the run had been killed after sending: the answer never reached the log.
        output.write_text("".join(line + "\n" for line in records if '"state":"answered"' not in line))
        resumed = CliRunner().invoke(cli, [*run, "--resume"], env={"COLDSEND_API_KEY": KEY})
        assert resumed.exit_code == 8, resumed.output
        assert "NOT created line 1 user1@example.test: create.outcome_unknown" in resumed.stdout
        assert "--retry-unknown" in resumed.stdout and len(api.creates()) == 1
        retried = CliRunner().invoke(
            cli, [*run, "--resume", "--retry-unknown"], env={"COLDSEND_API_KEY": KEY}
        )
        assert retried.exit_code == 0, retried.output
        assert len(api.creates()) == 2 and api.creates()[1].outcome == "replayed"


# -- files ------------------------------------------------------------------------------------------


def _inboxcheck(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "inboxcheck", *args], capture_output=True, timeout=60, check=False, **kwargs
    )


def test_stdin_that_is_the_output_file_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    output = tmp_path / "out.jsonl"
    args = ["check", "--batch", str(path), "--output", str(output), "--only", "account"]
    assert _inboxcheck(args).returncode == 0
    before = output.read_bytes()
    with output.open("rb") as stdin:
        result = _inboxcheck(
            ["check", "--batch", "-", "--output", str(output), "--resume", "--only", "account"], stdin=stdin
        )
    assert result.returncode == 2, result.stderr
    assert b"standard input is " in result.stderr and b"itself" in result.stderr
    assert output.read_bytes() == before


def test_a_fifo_as_output_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    for command in (["check"], ["connect"]):
        result = _inboxcheck(
            [*command, "--batch", str(path), "--output", str(fifo), "--only", "account"],
            env={**os.environ, "COLDSEND_API_KEY": KEY},
        )
        assert result.returncode == 2, result.stderr
        assert b"is a FIFO" in result.stderr and b"Traceback" not in result.stderr


async def test_retry_errors_on_a_symlinked_log_writes_through_to_its_target(tmp_path: Path) -> None:
    from tests.helpers import unreachable_for

    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    target = tmp_path / "logs" / "real.jsonl"
    target.parent.mkdir()
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    await run_batch(path, options=OFFLINE, output=link, env={}, specs=unreachable_for({"user2@example.test"}))
    again = await run_batch(path, options=OFFLINE, output=link, resume=True, retry_errors=True, env={})
    assert again.verdicts == Counter({"pass": 2})
    assert link.is_symlink() and link.resolve() == target
    assert Counter(r["verdict"] for r in read_results(target)) == Counter({"pass": 2})


async def test_a_stale_rewrite_temporary_is_removed_by_the_next_run(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    stale = tmp_path / ".out.jsonl.inboxcheck-k1ll3d.tmp"
    stale.write_bytes(output.read_bytes())  # what a run killed mid-rewrite leaves behind
    unrelated = tmp_path / ".other.jsonl.inboxcheck-k1ll3d.tmp"
    unrelated.write_bytes(b"")
    await run_batch(path, options=OFFLINE, output=output, resume=True, retry_errors=True, env={})
    assert not stale.exists() and unrelated.exists()


def test_a_rewrite_names_its_temporary_so_the_next_run_finds_it(tmp_path: Path) -> None:
    import tempfile

    from inboxcheck._batch import parse_logged
    from inboxcheck._jsonl import ResultLog

    name = "out.jsonl"
    output = tmp_path / name
    output.write_bytes(b"")
    made: list[str] = []
    real = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, temporary = real(*args, **kwargs)
        made.append(Path(temporary).name)
        return fd, temporary

    with pytest.MonkeyPatch.context() as patch, ResultLog.open(output) as log:
        patch.setattr(tempfile, "mkstemp", spy)
        log.rewrite(parse_logged, lambda record: True)
    assert len(made) == 1 and made[0].startswith(f".{name}.inboxcheck-") and made[0].endswith(".tmp")


async def test_a_line_edited_after_its_address_was_created_is_not_created_again(tmp_path: Path) -> None:
    """The same shape one step on: a new digest for an address already created is not a new inbox."""
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
            _replace_line(path, 1, batch_user(1, daily_limit=20))
            resumed = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert _posted(api) == Counter({"user1@example.test": 1, "user2@example.test": 1})
    assert resumed.already == [(1, 1)] and resumed.exit_code == 6
    assert "edited after their address was created" in resumed.describe()


async def test_an_old_logs_create_lines_still_stop_their_lines_being_created_again(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with _client(api) as client:
            await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
            # As an older inboxcheck wrote it: no header, no digests, one create line per answer.
            old = []
            for record in read_results(output):
                if record.get("state") == "sent":
                    continue
                old.append({k: v for k, v in record.items() if k not in ("digest", "state", "sent_at")})
            output.write_text("".join(json.dumps(r) + "\n" for r in old), encoding="utf-8")
            resumed = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert len(api.creates()) == 2
    assert resumed.creates == Counter() and resumed.exit_code == 0
    assert "older inboxcheck" in resumed.check.describe()


def test_ctrl_c_during_connect_batch_names_the_create_in_flight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    output = tmp_path / "out.jsonl"
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        api.misbehave(Stall())
        command = [
            sys.executable,
            "-m",
            "inboxcheck",
            "connect",
            "--batch",
            str(path),
            "--output",
            str(output),
        ]
        command += ["--only", "account", "--api-url", api.url]
        env = {**os.environ, "COLDSEND_API_KEY": KEY}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            for _ in range(3000):
                if api.creates() or proc.poll() is not None:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.02)
            assert api.creates(), "the create was never sent"
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # reaped, pipes closed: nothing leaks into the next test
                proc.kill()
                proc.communicate()
        key = api.creates()[0].idempotency_key
    assert proc.returncode == 130, stderr
    assert f"line 1 user1@example.test: the create was sent, no answer yet (Idempotency-Key {key})" in stderr
    assert "Traceback" not in stderr
