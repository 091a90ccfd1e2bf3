"""The command line, through click's runner and, for the entry point, a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from inboxcheck._input import ENV_IMAP_PASSWORD, ENV_SMTP_PASSWORD
from inboxcheck._schema import committed_report_schema
from inboxcheck.cli import cli
from tests.helpers import CANARY, custom_payload, google_payload

OFFLINE = ["--only", "account"]


def _run(args: list[str], *, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, env=env or {}, catch_exceptions=False)


def _words(text: str) -> list[str]:
    """The words of an output, but for the run's own duration ("in 0.1 s"), which differs between
    two runs of the same check."""
    return re.sub(r"\bin\s+\d+\.\d+\s+s\b", "in N s", text).split()


def _file(tmp_path: Path, payload: Any, name: str = "account.json") -> str:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return str(path)


def test_check_prints_a_text_report(tmp_path: Path) -> None:
    result = _run(["check", _file(tmp_path, google_payload()), *OFFLINE])
    assert result.exit_code == 0, result.output
    assert "Google Workspace" in result.stdout
    assert "Verdict: PASS" in result.stdout
    assert "Usernames" in result.stdout


def test_failures_exit_1_and_show_the_fix(tmp_path: Path) -> None:
    result = _run(["check", _file(tmp_path, google_payload(imap_port=143)), *OFFLINE])
    assert result.exit_code == 1
    assert "account.tls_port_mismatch" in result.stdout
    assert "fix: " in result.stdout
    assert "Verdict: FAIL" in result.stdout


def test_json_output_follows_the_committed_schema(tmp_path: Path) -> None:
    result = _run(["check", _file(tmp_path, google_payload()), *OFFLINE, "--format", "json"])
    report = json.loads(result.stdout)
    jsonschema.validate(report, committed_report_schema())
    assert report["verdict"] == "pass"
    assert {c["name"] for c in report["checks"]} >= {"account.usernames", "account.tls"}


def test_json_output_round_trips_through_the_model(tmp_path: Path) -> None:
    from inboxcheck._models import Report

    result = _run(["check", _file(tmp_path, google_payload(imap_port=143)), *OFFLINE, "--format", "json"])
    report = Report.model_validate_json(result.stdout)
    assert report.exit_code == result.exit_code == 1


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"email_address": ', "not valid JSON"),
        (json.dumps(google_payload(smtp_port="587")), "smtp_port: is a string"),
        (json.dumps(google_payload(smtp_port=70000)), "smtp_port: is 70000, out of range"),
        (json.dumps(google_payload(imap_port=0)), "imap_port: is 0, out of range"),
        (json.dumps(google_payload(smtp_password=...)), "smtp_password: is missing"),
        (json.dumps(google_payload(inbox_type="GMAIL")), "inbox_type: is 'GMAIL'"),
        (json.dumps(google_payload(extra=1)), "extra: is not a field"),
    ],
)
def test_bad_input_exits_2_with_a_line_naming_the_field(tmp_path: Path, content: str, field: str) -> None:
    result = _run(["check", _file(tmp_path, content)])
    assert result.exit_code == 2
    assert field in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_missing_file_and_bad_options_exit_2(tmp_path: Path) -> None:
    assert _run(["check", str(tmp_path / "none.json")]).exit_code == 2
    good = _file(tmp_path, google_payload())
    for args in (["--timeout", "0"], ["--nameserver", "dns.google"], ["--stage", "old"], ["--format", "xml"]):
        result = _run(["check", good, *args])
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", ""])
def test_a_ca_file_without_certificates_exits_2_before_any_check(tmp_path: Path, content: str) -> None:
    ca_file = tmp_path / "not-a-ca.pem"
    ca_file.write_text(content, encoding="utf-8")
    result = _run(["check", _file(tmp_path, google_payload()), "--ca-file", str(ca_file)])
    assert result.exit_code == 2, result.output
    assert "ca_file" in result.stderr and str(ca_file) in result.stderr
    assert "no PEM certificate" in result.stderr
    assert result.stdout == ""


def test_account_from_stdin_and_password_from_env_told_only_with_verbose() -> None:
    payload = json.dumps(custom_payload(smtp_password=..., imap_password=...))
    result = _run(["check", "-", *OFFLINE], input=payload, env={ENV_SMTP_PASSWORD: CANARY})
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    verbose = _run(["check", "-", *OFFLINE, "-v"], input=payload, env={ENV_SMTP_PASSWORD: CANARY})
    assert "smtp_password taken from INBOXCHECK_SMTP_PASSWORD" in verbose.stderr
    assert "imap_password taken from the SMTP password" in verbose.stderr
    assert CANARY not in result.output + verbose.output


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet_prints_only_the_verdict_line(tmp_path: Path, flag: str) -> None:
    payload = json.dumps(custom_payload(smtp_password=..., imap_port=143))
    env = {ENV_SMTP_PASSWORD: CANARY}
    result = _run(["check", "-", *OFFLINE, flag, "-v"], input=payload, env=env)
    assert result.exit_code == 1
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith("Verdict: FAIL (")
    assert result.stderr == ""
    as_json = _run(["check", "-", *OFFLINE, flag, "--format", "json"], input=payload, env=env)
    assert json.loads(as_json.stdout)["verdict"] == "fail"
    assert as_json.stderr == ""


def test_quiet_keeps_errors_on_stderr(tmp_path: Path) -> None:
    result = _run(["check", _file(tmp_path, google_payload(smtp_port="587")), "-q"])
    assert result.exit_code == 2
    assert "smtp_port: is a string" in result.stderr


@pytest.mark.parametrize("command", ["check", "diagnose", "connect"])
def test_invalid_account_with_format_json_prints_a_json_document(tmp_path: Path, command: str) -> None:
    bad = google_payload(smtp_port="587", inbox_type="GMAIL", smtp_password=CANARY + "\n")
    dry_run = ["--dry-run"] if command == "connect" else []
    result = _run([command, _file(tmp_path, bad), "--format", "json", *dry_run])
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["kind"] == "input_error" and document["exit_code"] == 2
    assert {f["code"] for f in document["findings"]} == {"input.invalid"}
    fields = {f["evidence"]["field"] for f in document["findings"]}
    assert fields == {"smtp_port", "inbox_type"}
    assert all(f["severity"] == "fail" and f["fix"] for f in document["findings"])
    assert "smtp_port: is a string" in result.stderr
    assert CANARY not in result.output
    dry_run = ["--dry-run"] if command == "connect" else []
    broken = _run(
        [command, _file(tmp_path, '{"email_address": ', "broken.json"), "--format", "json", *dry_run]
    )
    assert json.loads(broken.stdout)["findings"][0]["code"] == "input.invalid"


@pytest.mark.parametrize("width", [80, 100])
def test_text_wraps_to_columns_at_word_boundaries(tmp_path: Path, width: int) -> None:
    account = _file(tmp_path, google_payload(imap_port=143, smtp_username="someone.else@company.com"))
    flat = _run(["check", account, *OFFLINE])
    result = _run(["check", account, *OFFLINE], env={"COLUMNS": str(width)})

    assert _words(result.stdout) == _words(flat.stdout)
    assert max(len(line) for line in flat.stdout.splitlines()) > width, "the test needs long lines"
    assert all(len(line) <= width for line in result.stdout.splitlines()), result.stdout


def test_batch_from_stdin_with_progress_summary(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    lines = "\n".join([json.dumps(batch_user(1)), json.dumps(batch_user(2)), "{broken"]) + "\n"
    result = _run(["check", "--batch", "-", *OFFLINE], input=lines)
    assert result.exit_code == 2, result.output
    assert len(result.stdout.splitlines()) == 3
    # Standard input cannot be counted ahead: no total, no percentage.
    assert "inboxcheck: 3 checked, " in result.stderr and "/s, in " in result.stderr


def test_batch_progress_counts_the_file_first_and_ends_with_the_same_summary(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    path = tmp_path / "accounts.jsonl"
    path.write_text("\n".join([json.dumps(batch_user(i)) for i in range(4)]) + "\n\n", encoding="utf-8")
    result = _run(["check", "--batch", str(path), *OFFLINE])
    assert result.exit_code == 0, result.output
    assert re.search(r"inboxcheck: 4/4 checked, 100%, [0-9.]+/s, in \d+ s", result.stderr), result.stderr
    quiet = _run(["check", "--batch", str(path), *OFFLINE, "-q"])
    assert quiet.stderr == ""


def test_batch_progress_after_a_resume_counts_only_what_is_left(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    path, output = tmp_path / "accounts.jsonl", tmp_path / "results.jsonl"
    path.write_text("\n".join([json.dumps(batch_user(i)) for i in range(3)]) + "\n", encoding="utf-8")
    first = _run(["check", "--batch", str(path), "--output", str(output), *OFFLINE])
    assert "3/3 checked, 100%" in first.stderr, first.stderr
    with path.open("a", encoding="utf-8") as more:
        more.write(json.dumps(batch_user(3)) + "\n" + json.dumps(batch_user(4)) + "\n")
    second = _run(["check", "--batch", str(path), "--output", str(output), "--resume", *OFFLINE])
    assert "2/2 checked, 100%" in second.stderr, second.stderr


def test_progress_shows_done_of_total_percentage_rate_and_eta() -> None:
    from inboxcheck.cli._terminal import Progress

    now = [100.0]
    progress = Progress(1000, clock=lambda: now[0])
    progress.start(resumed=200)
    now[0] += 100
    progress.done = 200
    assert progress.describe() == "200/800 checked, 25%, 2.0/s, ETA 5 min 00 s"
    now[0] += 300
    progress.done = 800
    assert progress.describe(final=True) == "800/800 checked, 100%, 2.0/s, in 6 min 40 s"


def test_notices_and_batch_lines_escape_what_came_from_outside(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    path = tmp_path / "accounts.jsonl"
    hostile = batch_user(1) | {"email_address": "x\x1b]0;t\x07@example.test"}
    path.write_text(json.dumps(hostile) + "\n", encoding="utf-8")
    result = _run(["check", "--batch", str(path), *OFFLINE])
    assert "\x1b" not in result.output
    assert "\\x1b]0;t\\x07" in result.output
    weird = tmp_path / "a\x1b[2Jb.json"
    weird.write_text("{", encoding="utf-8")
    failed = _run(["check", str(weird)])
    assert failed.exit_code == 2
    assert "\x1b" not in failed.stderr and "a\\x1b[2Jb.json" in failed.stderr


def test_no_colour_without_a_terminal(tmp_path: Path) -> None:
    result = _run(["check", _file(tmp_path, google_payload(imap_port=143)), *OFFLINE])
    assert "\x1b[" not in result.stdout


def _canary_scenarios(tmp_path: Path) -> list[tuple[list[str], str | None, dict[str, str]]]:
    good = _file(tmp_path, custom_payload(), "good.json")
    bad = _file(tmp_path, custom_payload(smtp_port=0, imap_password=CANARY * 40), "bad.json")
    typo = _file(tmp_path, json.dumps(custom_payload())[:-1] + f', "smtp_pasword": "{CANARY}"}}', "typo.json")
    wrong_type = _file(tmp_path, custom_payload(smtp_password=[CANARY]), "type.json")
    no_pw = json.dumps(custom_payload(smtp_password=..., imap_password=...))
    env = {ENV_SMTP_PASSWORD: CANARY, ENV_IMAP_PASSWORD: CANARY}
    return [
        (["check", good, *OFFLINE], None, {}),
        (["check", good, *OFFLINE, "--format", "json", "-v"], None, {}),
        (["check", good, *OFFLINE, "--timeout", "-1"], None, {}),
        (["check", bad], None, {}),
        (["check", typo], None, {}),
        (["check", wrong_type], None, {}),
        (["check", typo, "--format", "json"], None, {}),
        (["check", wrong_type, "--format", "json"], None, {}),
        (["check", bad, "--format", "json", "-v"], None, {}),
        (["check", "-", *OFFLINE, "-v"], no_pw, env),
        (["check", "-", *OFFLINE, "--format", "json"], no_pw, env),
        (["--debug", "check", good, *OFFLINE], None, {}),
    ]


def test_the_canary_password_never_appears_in_any_output(tmp_path: Path) -> None:
    for args, stdin, env in _canary_scenarios(tmp_path):
        result = _run(args, input=stdin, env=env)
        assert CANARY not in result.stdout, args
        assert CANARY not in result.stderr, args
        assert CANARY[:8] not in result.output, args


def test_the_installed_command_runs_as_a_subprocess(tmp_path: Path) -> None:
    account = _file(tmp_path, custom_payload(imap_port=143, imap_use_ssl=True))
    proc = subprocess.run(
        [sys.executable, "-m", "inboxcheck", "check", account, *OFFLINE, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "fail"
    assert CANARY not in proc.stdout + proc.stderr
    version = subprocess.run(
        [sys.executable, "-m", "inboxcheck", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "inboxcheck, version" in version.stdout


def test_internal_errors_become_exit_70_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from inboxcheck.cli import check, main

    def broken(**_: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(check, "options_from", lambda params: broken())
    with pytest.raises(SystemExit) as info:
        main(["check", "fixtures/accounts/google-bad.json"])
    assert info.value.code == 70


def _interrupted(tmp_path: Path, args: list[str], before: Any = None) -> subprocess.CompletedProcess[str]:
    """Run the command against a server that accepts and never greets; Ctrl-C it once it connected."""
    import signal
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(30)
        port = listener.getsockname()[1]
        payload = custom_payload(smtp_host="127.0.0.1", smtp_port=port, imap_host="127.0.0.1", imap_port=port)
        account = _file(tmp_path, payload)
        if before is not None:
            before(account)
        command = [sys.executable, "-m", "inboxcheck", *[account if a == "ACCOUNT" else a for a in args]]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            held, _ = listener.accept()  # the check is now waiting for a greeting that never comes
            with held:
                proc.send_signal(signal.SIGINT)
                # Generous: on 2 loaded cores the interpreter can take seconds to unwind; a lost
                # cancellation shows as the run's own --timeout (30 s) ending it, not as a hang here.
                stdout, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    result = _interrupted(tmp_path, ["check", "ACCOUNT", "--only", "smtp", "--timeout", "30"])
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "inboxcheck: error: interrupted"
    assert result.stderr.count("\n") <= 2, repr(result.stderr)
    assert "Traceback" not in result.stderr


def test_ctrl_c_in_a_batch_leaves_the_log_usable_for_resume(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    log = tmp_path / "results.jsonl"
    batch = tmp_path / "accounts.jsonl"
    batch.write_text(json.dumps(batch_user(1)) + "\n", encoding="utf-8")
    args = ["check", "--batch", str(batch), "--output", str(log), *OFFLINE]
    assert _run(args).exit_code == 0
    kept = log.read_text(encoding="utf-8")
    batch.write_text(batch.read_text(encoding="utf-8") + "ACCOUNT_LINE\n", encoding="utf-8")

    def with_stalled_line(account: str) -> None:
        line = json.dumps(json.loads(Path(account).read_text(encoding="utf-8")))
        batch.write_text(batch.read_text(encoding="utf-8").replace("ACCOUNT_LINE", line), encoding="utf-8")

    result = _interrupted(
        tmp_path,
        ["check", "--batch", str(batch), "--output", str(log), "--resume", "--only", "smtp"],
        before=with_stalled_line,
    )
    assert result.returncode == 130, result.stderr
    assert log.read_text(encoding="utf-8") == kept  # nothing torn, nothing lost
    again = _run([*args, "--resume"])  # the log's lock went with the process
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("selector", ["bad selector", "s1..mail", "-s1", "s1._domainkey\n", "a" * 64, ""])
def test_a_dkim_selector_that_is_no_dns_name_is_bad_input(tmp_path: Path, selector: str) -> None:
    # RFC 6376 3.1: a selector is one or more DNS labels; anything else is refused before any lookup.
    result = _run(["check", _file(tmp_path, google_payload()), *OFFLINE, "--dkim-selector", selector])
    assert result.exit_code == 2, result.output
    assert "is not a DNS name" in result.stderr


@pytest.mark.parametrize("selector", ["google", "s1.mail", "selector1-contoso-com", "k_1"])
def test_dkim_selectors_that_are_dns_names_are_accepted(tmp_path: Path, selector: str) -> None:
    result = _run(["check", _file(tmp_path, google_payload()), *OFFLINE, "--dkim-selector", selector])
    assert result.exit_code == 0, result.output


def test_batch_line_errors_are_listed_per_field(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    path, output = tmp_path / "accounts.jsonl", tmp_path / "results.jsonl"
    bad = batch_user(1) | {"smtp_port": "587", "inbox_type": "GMAIL"}
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    result = _run(["check", "--batch", str(path), "--output", str(output), *OFFLINE])
    assert result.exit_code == 2, result.output
    [record] = [
        json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if '"header"' not in line
    ]
    assert "\n" not in record["error"]
    problems = {p["field"]: p for p in record["problems"]}
    assert set(problems) == {"smtp_port", "inbox_type"}
    assert problems["smtp_port"]["problem"].startswith("is a string")
    assert problems["smtp_port"]["allowed"] and problems["inbox_type"]["allowed"]
    assert all("allowed:" not in p["problem"] for p in record["problems"])


def test_a_batch_line_that_is_no_json_is_a_bad_line_not_an_account(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    lines = "\n".join([json.dumps(batch_user(1)), json.dumps(batch_user(2)), "{broken"]) + "\n"
    result = _run(["check", "--batch", "-", *OFFLINE], input=lines)
    assert result.exit_code == 2, result.output
    assert "inboxcheck: 2 accounts: 2 pass" in result.stderr
    assert "unusable input lines: 3" in result.stderr


def test_quiet_batch_prints_only_the_summary(tmp_path: Path) -> None:
    from tests.helpers import batch_user

    path = tmp_path / "accounts.jsonl"
    path.write_text("\n".join(json.dumps(batch_user(i)) for i in range(3)) + "\n", encoding="utf-8")
    result = _run(["check", "--batch", str(path), *OFFLINE, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "3 accounts: 3 pass\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    "extra",
    [["--to", "someone@example.com"], ["--keep-test-message"], ["--test-header", "X-A: b"]],
)
def test_send_test_options_without_send_test_are_bad_usage(tmp_path: Path, extra: list[str]) -> None:
    result = _run(["check", _file(tmp_path, google_payload()), *OFFLINE, *extra])
    assert result.exit_code == 2, result.output
    assert f"{extra[0]} goes with --send-test" in result.stderr


_SWALLOWS_THE_CANCEL = """
import asyncio, sys
from inboxcheck.cli._terminal import run_async

async def stubborn():
    # A library that loses the cancellation (a timeout and a cancel that meet): it runs on.
    print("ready", flush=True)
    for _ in range(100):
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
    return "finished as if nobody asked"

try:
    print(run_async(stubborn()))
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
"""


def test_ctrl_c_ends_a_command_as_interrupted_even_where_a_library_lost_the_cancellation() -> None:
    import signal

    command = [sys.executable, "-c", _SWALLOWS_THE_CANCEL]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stdout == "interrupted\n"
