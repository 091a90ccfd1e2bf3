"""Batch files a careless or hostile user gives: the output that is the input, a damaged log, two runs
on one log, a rewrite, lines that are huge or hold huge numbers, an output the OS will not take.

Where a case is about a file, the file's bytes are compared before and after.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inboxcheck._batch import read_batch, read_results, run_batch
from inboxcheck._errors import ResultsLogError
from inboxcheck._jsonl import ResultLog, read_lines
from inboxcheck._options import CheckOptions, Family
from inboxcheck.cli import cli
from inboxcheck.platform.batch import CreateLine, connect_batch
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.key import ApiKey
from lab.api_double import ApiDouble
from tests.helpers import batch_user, unreachable_for, write_jsonl

OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))
KEY = "cs_test_" + "f" * 24
HUGE = "9" * 5000


def _jsonl(tmp_path: Path, rows: list[Any], name: str = "in.jsonl") -> Path:
    return write_jsonl(tmp_path / name, rows)


def _csv_rows(*rows: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()


def _cells(payload: dict[str, Any], **changes: str) -> list[str]:
    return [changes.get(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in payload.items()]


def _cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def _damage(path: Path, index: int) -> bytes:
    """Overwrite line ``index`` (0-based) with bytes of the same length that are not JSON; return it."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[index] = b"\x00" + b"#" * (len(lines[index]) - 2) + b"\n"
    path.write_bytes(b"".join(lines))
    return lines[index]


# -- 1. the output may never be the input -----------------------------------------------------------


def _same_file(tmp_path: Path, how: str, input_path: Path) -> Path:
    if how == "same path":
        return input_path
    other = tmp_path / "results.jsonl"
    if how == "hard link":
        os.link(input_path, other)
    else:
        other.symlink_to(input_path)
    return other


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink"])
@pytest.mark.parametrize("resume", [False, True])
def test_an_output_that_is_the_input_is_refused_and_the_input_is_untouched(
    tmp_path: Path, how: str, resume: bool
) -> None:
    batch = _jsonl(tmp_path, [batch_user(i) for i in range(3)])
    before = batch.read_bytes()
    output = _same_file(tmp_path, how, batch)
    for command in ("check", "connect"):
        result = _cli(
            [command, "--batch", str(batch), "--output", str(output), "--only", "account"]
            + (["--resume"] if resume else []),
            env={"COLDSEND_API_KEY": KEY},
        )
        assert result.exit_code == 2, result.output
        assert "is the batch file itself" in result.stderr
        assert batch.read_bytes() == before


# -- 2. a damaged line is skipped, not the end of the log -------------------------------------------


async def test_resume_skips_a_damaged_middle_line_and_keeps_every_result_after_it(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(6)])
    output = tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={})
    damaged = _damage(output, 2)
    before = output.read_bytes()
    kept = {r["line"] for r in read_results(output)}
    assert len(kept) == 5
    checked: list[int] = []
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, env={}, on_result=lambda r: checked.append(r.line)
    )
    assert checked == sorted(set(range(1, 7)) - kept)
    assert summary.damaged_log_lines == [3]
    assert "line(s) 3 could not be read" in summary.describe()
    assert summary.skipped_done == 5 and summary.total == 6
    after = output.read_bytes()
    assert after.startswith(before) and damaged in after  # nothing before or after it was cut
    assert Counter(r["line"] for r in read_results(output)) == Counter(range(1, 7))


def test_the_cli_names_the_damaged_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(4)])
    output = tmp_path / "out.jsonl"
    args = ["check", "--batch", str(path), "--output", str(output), "--only", "account"]
    assert _cli(args).exit_code == 0
    _damage(output, 1)
    result = _cli([*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert "line(s) 2 could not be read and were skipped" in result.stderr


async def test_a_created_account_is_never_created_again_whatever_else_is_damaged(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(5)])
    output = tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with PlatformClient(ApiKey.parse(KEY), base_url=api.url) as client:
            first = await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
            assert first.creates == Counter({"created": 5})
            lines = output.read_bytes().splitlines(keepends=True)
            # The check line of one created account and, before the creates, another check line.
            checks = [i for i, raw in enumerate(lines) if b'"kind":' not in raw]
            _damage(output, checks[1])
            _damage(output, checks[3])
            before = output.read_bytes()
            again = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
        assert again.creates == Counter() and again.check.damaged_log_lines == [checks[1] + 1, checks[3] + 1]
        assert len(api.creates()) == 5
    assert output.read_bytes().startswith(before)
    results = read_results(output)
    answered = Counter(r["line"] for r in results if r.get("state") == "answered")
    assert answered == Counter(range(1, 6))
    assert Counter(r["line"] for r in results if r.get("kind") != "create") == Counter(range(1, 6))


# -- 3. one run per log -----------------------------------------------------------------------------


def test_a_second_run_on_a_log_in_use_refuses_at_once_naming_it(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(3)])
    output = tmp_path / "out.jsonl"
    args = ["check", "--batch", str(path), "--output", str(output), "--only", "account"]
    assert _cli(args).exit_code == 0
    before = output.read_bytes()
    with ResultLog.open(output):  # another run holding the log
        for extra in (["--resume"], ["--resume", "--retry-errors"]):
            result = _cli([*args, *extra])
            assert result.exit_code == 2, result.output
            assert f"{output} is the results log of another inboxcheck run" in result.stderr
        connect = _cli(
            ["connect", "--batch", str(path), "--output", str(output), "--resume", "--only", "account"],
            env={"COLDSEND_API_KEY": KEY},
        )
        assert connect.exit_code == 2 and str(output) in connect.stderr
    assert output.read_bytes() == before


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(1)])
    output = tmp_path / "out.jsonl"
    script = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", script, str(output)], stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            result = _cli(["check", "--batch", str(path), "--output", str(output), "--only", "account"])
            assert result.exit_code == 2 and "another inboxcheck run" in result.stderr
        finally:
            holder.kill()
    assert output.read_bytes() == b""


async def test_connect_batch_holds_the_log_until_its_last_create(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(2)])
    output = tmp_path / "out.jsonl"
    refusals: list[str] = []

    def on_create(line: CreateLine) -> None:
        try:
            ResultLog.open(output).close()
        except ResultsLogError as exc:
            refusals.append(str(exc))

    async with ApiDouble(keys={KEY}) as api, PlatformClient(ApiKey.parse(KEY), base_url=api.url) as client:
        await connect_batch(path, output=output, client=client, options=OFFLINE, env={}, on_create=on_create)
    assert len(refusals) == 2 and all("another inboxcheck run" in r for r in refusals)
    ResultLog.open(output).close()  # released at the end


# -- 4. a rewrite keeps the log's mode and owner ----------------------------------------------------


async def test_retry_errors_keeps_the_logs_mode_and_owner(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(4)])
    output = tmp_path / "out.jsonl"
    down = {"user1@example.test"}

    spec = unreachable_for(down)
    await run_batch(path, options=OFFLINE, output=output, env={}, specs=spec)
    output.chmod(0o640)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        owner = (1234, 5678)
        os.chown(output, *owner)
    lines = output.read_bytes().splitlines(keepends=True)
    kept = b"".join(raw for raw in lines if b'"verdict":"error"' not in raw)
    down.clear()
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, retry_errors=True, env={}, specs=spec
    )
    assert summary.verdicts == Counter({"pass": 4})
    info = output.stat()
    assert oct(info.st_mode & 0o777) == "0o640"
    assert (info.st_uid, info.st_gid) == owner
    assert output.read_bytes().startswith(kept) and len(read_results(output)) == 4
    left = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240 - a test's tmp dir
    assert left == ["in.jsonl", "out.jsonl"]  # no temp file left behind


async def test_a_rewrite_keeps_damaged_lines_byte_for_byte_even_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _jsonl(tmp_path, [batch_user(i) for i in range(3)])
    output = tmp_path / "out.jsonl"
    down = {"user2@example.test"}
    spec = unreachable_for(down)
    await run_batch(path, options=OFFLINE, output=output, env={}, specs=spec)
    monkeypatch.setattr("inboxcheck._jsonl.MAX_LOG_LINE_BYTES", 5_000)  # a report line is about 2 KB
    lines = output.read_bytes().splitlines(keepends=True)
    long_garbage, short_garbage = b"\xff" * 20_000 + b"\n", b"not json\n"
    output.write_bytes(lines[0] + long_garbage + lines[1] + short_garbage + lines[2] + b'{"line": 9')
    down.clear()
    summary = await run_batch(
        path, options=OFFLINE, output=output, resume=True, retry_errors=True, env={}, specs=spec
    )
    assert summary.damaged_log_lines == [2, 4]
    kept = [raw for raw in lines if b'"verdict":"error"' not in raw]
    assert output.read_bytes().startswith(kept[0] + long_garbage + kept[1] + short_garbage)
    assert Counter(r["line"] for r in read_results(output)) == Counter({1: 1, 2: 1, 3: 1})


# -- 5. a number too long to convert is that line's problem -----------------------------------------


def test_a_5000_digit_integer_makes_its_line_invalid_and_the_batch_goes_on(tmp_path: Path) -> None:
    huge = json.dumps(batch_user(2)).replace('"smtp_port": 587', f'"smtp_port": {HUGE}')
    path = _jsonl(tmp_path, [batch_user(1), huge, batch_user(3)])
    output = tmp_path / "out.jsonl"
    result = _cli(["check", "--batch", str(path), "--output", str(output), "--only", "account"])
    assert result.exit_code == 2, result.output
    by_line = {r["line"]: r for r in read_results(output)}
    assert by_line[1]["verdict"] == by_line[3]["verdict"] == "pass"
    assert by_line[2]["verdict"] == "invalid"
    assert "smtp_port: is an integer of 5000 digits" in by_line[2]["error"]


def test_a_5000_digit_integer_in_a_csv_cell_names_its_column(tmp_path: Path) -> None:
    payload = batch_user(1)
    path = tmp_path / "in.csv"
    path.write_bytes(_csv_rows(list(payload), _cells(payload, daily_limit=HUGE)))
    (item,) = read_batch(path, env={})
    assert item.error is not None and "daily_limit: is an integer of 5000 digits" in item.error


def test_a_single_account_file_with_a_5000_digit_integer_exits_2_naming_the_field(tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    account.write_text(json.dumps(batch_user(1)).replace('"imap_port": 993', f'"imap_port": {HUGE}'))
    result = _cli(["check", str(account), "--only", "account"])
    assert result.exit_code == 2, result.output
    assert "imap_port: is an integer of 5000 digits; allowed: an integer from 1 to 65535" in result.stderr


# -- 6. a line longer than the bound is never read whole --------------------------------------------


def test_lines_are_read_with_a_bound(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    path.write_bytes(b"short\n" + b"x" * 100 + b"\n" + b"y" * 10 + b"\n" + b"torn")
    with path.open("rb") as handle:
        lines = list(read_lines(handle, limit=10))
    assert [(line.number, line.data, line.complete) for line in lines] == [
        (1, b"short\n", True),
        (2, None, True),
        (3, b"y" * 10 + b"\n", True),
        (4, b"torn", False),
    ]
    assert [line.offset for line in lines] == [0, 6, 107, 118]


# Peak memory is counted across exec from the process that spawned it (the pytest process, hundreds
# of megabytes); a small Python in between is the parent whose children are measured.
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _peak_rss_kib(args: list[str]) -> tuple[int, int]:
    """Run ``args``; return its exit code and its peak resident memory in KiB."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args], capture_output=True, check=True, timeout=300
    )
    code, peak = done.stdout.split()
    return int(code), int(peak)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_150_mb_line_leaves_memory_flat(tmp_path: Path, fmt: str) -> None:
    payload = batch_user(1)
    if fmt == "jsonl":
        good = [json.dumps(batch_user(1)).encode(), json.dumps(batch_user(2)).encode()]
        opening, filler, closing = b'{"display_name": "', b"A", b'"}'
    else:
        good = _csv_rows(list(payload), _cells(payload)).splitlines()
        opening, filler, closing = b"", b"B", b""
    small, big = tmp_path / f"small.{fmt}", tmp_path / f"big.{fmt}"
    small.write_bytes(b"".join(line + b"\n" for line in good))
    with big.open("wb") as handle:
        handle.write(good[0] + b"\n" + opening)
        chunk = filler * 1_000_000
        for _ in range(150):
            handle.write(chunk)
        handle.write(closing + b"\n" + b"".join(line + b"\n" for line in good[1:]))
    base = [sys.executable, "-m", "inboxcheck", "check", "--only", "account", "--format", "json", "--batch"]
    code, baseline = _peak_rss_kib([*base, str(small)])
    assert code == 0
    code, peak = _peak_rss_kib([*base, str(big)])
    big.unlink()
    assert code == 2  # the long line is that line's problem; the others are checked
    # Reading the line whole costs at least its 150 MB; a bounded read adds about one megabyte.
    assert peak - baseline < 40_000, f"peak {peak} KiB against {baseline} KiB for a small file"


# -- 7. an output the OS refuses is the user's problem, with the OS's reason -------------------------


@contextlib.contextmanager
def _read_only_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing", "No such file or directory"),
        # A device is no results log: refused before it is opened (it could not be resumed from).
        ("full", "not a regular file"),
        ("read-only", "Read-only file system"),
    ],
)
def test_an_output_the_os_refuses_exits_2_with_its_reason(tmp_path: Path, where: str, reason: str) -> None:
    path = _jsonl(tmp_path, [batch_user(1), batch_user(2)])
    before = path.read_bytes()
    with contextlib.ExitStack() as stack:
        if where == "missing":
            output = tmp_path / "no-such-dir" / "out.jsonl"
        elif where == "full":
            output = Path("/dev/full")
        else:
            output = stack.enter_context(_read_only_dir(tmp_path)) / "out.jsonl"
        for command in ("check", "connect"):
            result = _cli(
                [command, "--batch", str(path), "--output", str(output), "--only", "account"],
                env={"COLDSEND_API_KEY": KEY},
            )
            assert result.exit_code == 2, result.output
            assert reason in result.stderr and str(output) in result.stderr
            assert "bug" not in result.stderr
    assert path.read_bytes() == before
