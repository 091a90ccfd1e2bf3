"""A batch's send test is written ahead in its results log: a test message is sent at most once per
account unless the user says so (``resend_test``), whatever the run was killed in between.

The send step here is a stand-in with the real one's part in the log (``ctx.send_journal``); the
real step, a real SIGKILL and the lab's mailbox are in tests/checks/test_send_interrupted.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inboxcheck._batch import read_results, run_batch
from inboxcheck._batch_log import parse_logged
from inboxcheck._batch_results import BatchSummary, SendTestLine
from inboxcheck._check import SEND_UNKNOWN, CheckContext, CheckSpec, Outcome, SentTest
from inboxcheck._models import Severity
from inboxcheck._options import CheckOptions, Family
from tests.helpers import batch_user, write_jsonl

OPTIONS = CheckOptions(families=frozenset({Family.ACCOUNT}), send_test=True)


def _specs(sent: list[str], *, other_error: bool = False) -> list[CheckSpec]:
    """``send.message`` as the real one uses the log: no message when an earlier one is unknown,
    else written ahead, then sent (counted in ``sent``). ``other_error``: another check cannot tell."""

    async def send_message(ctx: CheckContext) -> Outcome:
        journal = ctx.send_journal
        assert journal is not None
        if journal.earlier is not None:
            out = Outcome(summary="not sent")
            out.add(SEND_UNKNOWN, Severity.ERROR, "may have been delivered", token=journal.earlier.token)
            return out
        token = f"ic{len(sent):020x}"
        journal.write_ahead(
            SentTest(token, f"<{token}@lab.test>", ctx.account.email_address, datetime.now(UTC))
        )
        sent.append(token)
        return Outcome(summary="sent")

    async def other(ctx: CheckContext) -> Outcome:
        out = Outcome(summary="other")
        if other_error:
            out.add("test.other.unavailable", Severity.ERROR, "could not tell")
        return out

    return [
        CheckSpec("send.message", "Test message sent", Family.ACCOUNT, send_message),
        CheckSpec("test.other", "Other", Family.ACCOUNT, other),
    ]


async def _run(path: Path, output: Path, sent: list[str], **kwargs: Any) -> BatchSummary:
    other_error = kwargs.pop("other_error", False)
    return await run_batch(
        path, options=OPTIONS, output=output, env={}, specs=_specs(sent, other_error=other_error), **kwargs
    )


def _kill_before_the_check_lines(output: Path) -> None:
    """What a SIGKILL after the message left, before the account's line was written, leaves."""
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    output.write_text("".join(line for line in lines if '"verdict"' not in line), encoding="utf-8")


def _send_lines(output: Path) -> list[SendTestLine]:
    records = [parse_logged(line.encode()) for line in output.read_text(encoding="utf-8").splitlines()]
    return [record for record in records if isinstance(record, SendTestLine)]


def _codes(output: Path) -> list[set[str]]:
    return [
        {f["code"] for check in r["report"]["checks"] for f in check["findings"]}
        for r in read_results(output)
        if "verdict" in r
    ]


async def test_the_message_is_on_disk_before_it_leaves_and_a_resume_never_sends_it_twice(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1), batch_user(2)])
    output = tmp_path / "out.jsonl"
    sent: list[str] = []
    first = await _run(path, output, sent)
    assert first.exit_code == 0 and len(sent) == 2
    (send_one, send_two) = _send_lines(output)
    assert {send_one.token, send_two.token} == set(sent)
    assert send_one.email_address != send_two.email_address

    _kill_before_the_check_lines(output)
    resumed = await _run(path, output, sent, resume=True)
    assert len(sent) == 2, "no second message"
    assert resumed.send_unknown == [1, 2]
    assert resumed.exit_code == 3  # could not tell, never a pass
    assert "--resend-test" in resumed.describe()
    assert _codes(output) == [{SEND_UNKNOWN}, {SEND_UNKNOWN}]

    # Its result is now written: a further resume skips the account, still without a message.
    again = await _run(path, output, sent, resume=True)
    assert len(sent) == 2 and again.skipped_done == 2 and again.send_unknown == []
    # --retry-errors is no say to send again: the message's outcome is still unknown.
    retried = await _run(path, output, sent, resume=True, retry_errors=True)
    assert len(sent) == 2 and retried.send_unknown == [1, 2]
    assert len(_send_lines(output)) == 2


async def test_resend_test_is_the_users_say_to_send_again(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    sent: list[str] = []
    await _run(path, output, sent)
    _kill_before_the_check_lines(output)
    resumed = await _run(path, output, sent, resume=True, resend_test=True)
    assert len(sent) == 2 and resumed.exit_code == 0 and resumed.send_unknown == []
    assert [line.token for line in _send_lines(output)] == sent  # the new one written ahead too


async def test_retry_errors_sends_again_a_message_whose_answer_its_dropped_result_holds(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    sent: list[str] = []
    first = await _run(path, output, sent, other_error=True)
    assert first.exit_code == 3 and len(sent) == 1
    # The message was answered and its result written; another check could not tell: checked again.
    retried = await _run(path, output, sent, resume=True, retry_errors=True)
    assert len(sent) == 2 and retried.exit_code == 0 and retried.send_unknown == []
    assert [line.token for line in _send_lines(output)] == sent[1:]


async def test_without_an_output_nothing_is_written_ahead(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    seen: list[object] = []

    async def send_message(ctx: CheckContext) -> Outcome:
        seen.append(ctx.send_journal)
        return Outcome(summary="sent")

    spec = [CheckSpec("send.message", "Test message sent", Family.ACCOUNT, send_message)]
    await run_batch(path, options=OPTIONS, env={}, specs=spec)
    assert seen == [None]


async def test_connect_batch_reads_send_test_lines_as_no_create(tmp_path: Path) -> None:
    from inboxcheck._jsonl import ResultLog
    from inboxcheck.platform.batch import _read_log

    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    await _run(path, output, [])
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    (send_line,) = [line for line in lines if '"kind":"send_test"' in line]
    # A damaged copy of it too (a cut line in the middle of the log): still no create.
    output.write_text("".join(lines) + send_line[: len(send_line) // 2] + "\n", encoding="utf-8")
    with ResultLog.open(output) as log:
        read = _read_log(log)
    assert read.held_by == [] and all(state.create is None for state in read.accounts.values())


async def test_a_damaged_send_test_line_still_stops_a_second_message(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = tmp_path / "out.jsonl"
    sent: list[str] = []
    await _run(path, output, sent)
    _kill_before_the_check_lines(output)
    header, send_line = output.read_text(encoding="utf-8").splitlines(keepends=True)
    # Its end is lost (not JSON any more); what is left still names the account and the token.
    output.write_text(header + send_line[: send_line.index('"message_id"')] + "\n", encoding="utf-8")

    resumed = await _run(path, output, sent, resume=True)
    assert len(sent) == 1 and resumed.send_unknown == [1] and resumed.damaged_log_lines == [2]
    (line,) = [r for r in read_results(output) if "verdict" in r]
    message = next(c for c in line["report"]["checks"] if c["name"] == "send.message")
    assert message["findings"][0]["evidence"]["token"] == sent[0]

    retried = await _run(path, output, sent, resume=True, retry_errors=True)
    assert len(sent) == 1 and retried.send_unknown == [1]


def test_resend_test_goes_with_resume_and_the_send_test(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from inboxcheck.cli import cli

    path = write_jsonl(tmp_path / "in.jsonl", [batch_user(1)])
    output = str(tmp_path / "out.jsonl")
    env = {"COLDSEND_API_KEY": "cs_test_" + "g" * 24}
    for command in ("check", "connect"):
        base = [command, "--batch", str(path), "--output", output, "--only", "account", "--resend-test"]
        for extra in ([], ["--resume"], ["--send-test"]):
            result = CliRunner().invoke(cli, [*base, *extra], env=env)
            assert result.exit_code == 2, result.output
            assert "--resend-test goes with --batch --resume --send-test" in result.output
    assert not Path(output).exists()
