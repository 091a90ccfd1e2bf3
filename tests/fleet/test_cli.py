"""The fleet's commands: keys, bad input, the listing commands, and watch's clean stop."""

from __future__ import annotations

import csv as std_csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from inboxcheck.cli import cli
from inboxcheck.fleet._crypto import new_key_text
from tests.helpers import CANARY, batch_user, write_jsonl


def _invoke(args: list[str], env: dict[str, str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["fleet", *args], env=env, input=stdin, catch_exceptions=False)


@pytest.fixture
def env(fleet_db: str) -> dict[str, str]:
    return {"INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": fleet_db}


def test_key_new_prints_a_fresh_key_each_time() -> None:
    first, second = (_invoke(["key", "new"], {}).stdout.strip() for _ in range(2))
    assert first != second and len(first) == 44


def test_without_a_key_the_commands_that_need_one_stop_with_exit_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1)])
    for args in (["add", str(path)], ["run", "--only", "account"]):
        result = _invoke(args, {**env, "INBOXCHECK_FLEET_KEY": ""})
        assert result.exit_code == 2, result.stderr
        assert "INBOXCHECK_FLEET_KEY" in result.stderr and "fleet key new" in result.stderr


def test_add_reads_stdin_and_csv_like_check_batch_and_says_what_it_did(
    env: dict[str, str], tmp_path: Path
) -> None:
    rows = [batch_user(1), batch_user(2, smtp_port=0), {"email_address": "x@example.test"}]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    result = _invoke(["add", "-", "--interval", "6h"], env, stdin=text)
    assert result.exit_code == 2
    assert result.stdout.splitlines()[0] == "added user1@example.test"
    assert "refused line 2" in result.stdout and "smtp_port" in result.stdout
    assert "refused line 3" in result.stdout and "partial" in result.stdout
    assert "1 added, 0 updated, 0 unchanged, 2 refused" in result.stderr
    csv = tmp_path / "a.csv"
    payload = batch_user(1)
    with csv.open("w", newline="", encoding="utf-8") as handle:
        writer = std_csv.writer(handle)
        writer.writerow(payload)
        writer.writerow(str(v).lower() if isinstance(v, bool) else v for v in payload.values())
    again = _invoke(["add", str(csv)], env)
    assert again.exit_code == 0 and again.stdout == "updated user1@example.test\n"  # its interval
    listed = json.loads(_invoke(["list", "--format", "json"], env).stdout)["accounts"]
    assert [(a["email_address"], a["interval_s"]) for a in listed] == [("user1@example.test", 86400)]
    assert CANARY not in result.output + again.output


@pytest.mark.parametrize("interval", ["soon", "10s", "-1h"])
def test_a_bad_interval_is_bad_input(env: dict[str, str], interval: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1)])
    assert _invoke(["add", str(path), "--interval", interval], env).exit_code == 2


def test_a_bad_database_url_is_bad_input_without_its_password() -> None:
    result = _invoke(["status"], {"INBOXCHECK_FLEET_DB": "mysql://u:Sekr3t@h/d"})
    assert (
        result.exit_code == 2
        and "sqlite:///" in result.stderr
        and "Sekr3t" not in result.output + result.stderr
    )
    unreachable = _invoke(["status", "--db", "postgresql://u:Sekr3t@127.0.0.1:9/d"], {})
    assert unreachable.exit_code == 2 and "cannot open the fleet database" in unreachable.stderr
    assert "Sekr3t" not in unreachable.stderr


def test_a_wrong_key_names_the_accounts_and_rekey_moves_them_to_a_new_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1), batch_user(2)])
    assert _invoke(["add", str(path)], env).exit_code == 0
    other = {**env, "INBOXCHECK_FLEET_KEY": new_key_text()}
    wrong = _invoke(["run", "--only", "account"], other)
    assert wrong.exit_code == 2 and "user1@example.test, user2@example.test" in wrong.stderr
    new_key = tmp_path / "new.key"
    new_key.write_text(other["INBOXCHECK_FLEET_KEY"])
    assert _invoke(["rekey", "--new-key-file", str(new_key)], other).exit_code == 2  # the old key is needed
    rekeyed = _invoke(["rekey", "--new-key-file", str(new_key)], env)
    assert rekeyed.exit_code == 0 and "2 account(s) re-encrypted" in rekeyed.stderr
    run = _invoke(
        ["run", "--only", "account", "--key-file", str(new_key)], {**env, "INBOXCHECK_FLEET_KEY": ""}
    )
    assert run.exit_code == 0, run.stderr
    assert "user1@example.test pass" in run.stdout


def test_status_history_changes_pause_and_remove(env: dict[str, str], tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1), batch_user(2)])
    _invoke(["add", str(path)], env)
    assert _invoke(["pause", "user2@example.test"], env).exit_code == 0
    assert _invoke(["run", "--only", "account", "-q"], env).exit_code == 0
    rows = {
        r["email_address"]: r
        for r in json.loads(_invoke(["status", "--format", "json"], env).stdout)["accounts"]
    }
    assert rows["user1@example.test"]["verdict"] == "pass" and rows["user1@example.test"]["checked_at"]
    assert rows["user2@example.test"] == {
        "email_address": "user2@example.test",
        "verdict": "unknown",
        "since": None,
        "checked_at": None,
        "cause": None,
    }
    history = json.loads(_invoke(["history", "user1@example.test", "--format", "json"], env).stdout)
    assert [r["verdict"] for r in history["reports"]] == ["pass"]
    changes = json.loads(_invoke(["changes", "--since", "1h", "--format", "json"], env).stdout)["changes"]
    assert [(c["email_address"], c["from"], c["to"]) for c in changes] == [
        ("user1@example.test", "unknown", "pass")
    ]
    assert json.loads(
        _invoke(["changes", "--since", "2999-01-01T00:00Z", "--format", "json"], env).stdout
    ) == {"changes": []}
    assert _invoke(["changes", "--since", "yesterday"], env).exit_code == 2
    assert "user1@example.test pass" in _invoke(["status"], env).stdout
    assert _invoke(["prune", "--keep-days", "0"], env).exit_code == 0
    assert (
        len(json.loads(_invoke(["history", "user1@example.test", "--format", "json"], env).stdout)["reports"])
        == 1
    )
    assert _invoke(["remove", "user1@example.test"], env).exit_code == 0
    missing = _invoke(["history", "user1@example.test"], env)
    assert missing.exit_code == 2 and "no such account" in missing.stderr


def test_watch_stops_cleanly_on_sigterm_with_nothing_half_recorded(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(i) for i in range(300)])
    assert _invoke(["add", str(path)], env).exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "inboxcheck", "fleet", "watch", "--only", "account"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    # Stopped while it is checking: after its first result.
    first = proc.stdout.readline()
    assert "@example.test" in first
    proc.send_signal(signal.SIGTERM)
    # Within the timeout, or the test fails: a stop that hangs is the bug this catches.
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped after" in err
    status = json.loads(_invoke(["status", "--format", "json"], env).stdout)["accounts"]
    checked = [row for row in status if row["checked_at"] is not None]
    for row in checked:
        history = json.loads(_invoke(["history", row["email_address"], "--format", "json"], env).stdout)
        assert len(history["reports"]) == 1 and history["reports"][0]["state"] == row["verdict"]
    # The next run finishes the same round.
    assert len(checked) < 300
    rest = _invoke(["run", "--only", "account"], env)
    assert rest.exit_code == 0 and "resumed round 1" in rest.stderr
    assert all(
        row["checked_at"]
        for row in json.loads(_invoke(["status", "--format", "json"], env).stdout)["accounts"]
    )


def _diagnose(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, ["diagnose", *args], env=env, catch_exceptions=False)


def test_diagnose_fleet_is_fleet_diagnose_no_password_asked_and_what_changed_since_the_last_pass(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1)])
    assert _invoke(["add", str(path)], env).exit_code == 0
    never = _diagnose(["--fleet", "user1@example.test", "--only", "account", "--no-alternates"], env)
    assert never.exit_code == 0, never.stderr
    assert "No passing report of this account is stored" in never.stdout
    assert _invoke(["run", "--only", "account", "-q"], env).exit_code == 0

    args = ["user1@example.test", "--only", "account", "--no-alternates", "--format", "json"]
    # No stdin, no password in the environment: the passwords come from the store.
    alias = _diagnose(["--fleet", *args], env)
    direct = _invoke(["diagnose", *args], env)
    assert alias.exit_code == direct.exit_code == 0, alias.stderr
    via_diagnose, via_fleet = json.loads(alias.stdout), json.loads(direct.stdout)
    assert via_diagnose.keys() == via_fleet.keys() and "causes" in via_diagnose
    assert via_diagnose["report"]["account"]["email_address"] == "user1@example.test"
    assert via_diagnose["since_last_pass"] is not None
    assert via_diagnose["since_last_pass"].keys() == via_fleet["since_last_pass"].keys()
    text = _diagnose(["--fleet", "USER1@example.test", *args[1:-2]], env)
    assert text.exit_code == 0 and "What changed since the last passing report:" in text.stdout
    quiet = _diagnose(["--fleet", *args[:-2], "-q"], env)
    assert quiet.exit_code == 0 and len(quiet.stdout.splitlines()) == 1, quiet.stdout
    everything = never.output + alias.output + direct.output + text.output + quiet.output
    assert CANARY not in everything + never.stderr + alias.stderr + text.stderr


def test_diagnose_fleet_bad_input_is_a_precise_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(1)])
    assert _invoke(["add", str(path)], env).exit_code == 0
    report = tmp_path / "earlier.json"
    report.write_text("{}")
    token = tmp_path / "token"
    token.write_text("ya29.token")
    only = ["--only", "account", "--no-alternates"]
    cases = [
        (["--fleet", "nobody@example.test", *only], env, "nobody@example.test: no such account"),
        (["--fleet", str(path), *only], env, "ACCOUNT is the address of an account in the fleet"),
        (["--fleet", "user1@example.test", "--previous", str(report), *only], env, "--previous goes with"),
        (["--fleet", "user1@example.test", "--oauth-token-file", str(token), *only], env, "--oauth-*"),
        (["--fleet", "user1@example.test", *only], {**env, "INBOXCHECK_FLEET_KEY": ""}, "fleet key new"),
        ([str(path), "--db", env["INBOXCHECK_FLEET_DB"], *only], env, "--db goes with --fleet"),
    ]
    for args, environment, message in cases:
        result = _diagnose(args, environment)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output, result.stderr)
        assert "Traceback" not in result.stderr
    # INBOXCHECK_FLEET_DB in the environment is no --db: diagnosing a payload file still works.
    plain = _diagnose([str(write_jsonl(tmp_path / "one.json", [batch_user(2)])), *only], env)
    assert plain.exit_code == 0, plain.stderr


def test_a_run_beside_a_watch_takes_its_turn_and_no_account_is_checked_twice(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [batch_user(i) for i in range(300)])
    assert _invoke(["add", str(path)], env).exit_code == 0
    command = [sys.executable, "-m", "inboxcheck", "fleet"]
    watch = subprocess.Popen(
        [*command, "watch", "--only", "account"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert "@example.test" in watch.stdout.readline()
        run = subprocess.run(
            [*command, "run", "--only", "account"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        watch.send_signal(signal.SIGTERM)
        _out, watch_err = watch.communicate(timeout=60)
    assert run.returncode == 0 and "no account is due" in run.stderr, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr + watch_err
    assert watch.returncode == 0 and "stopped after 1 round(s)" in watch_err, watch_err
    status = json.loads(_invoke(["status", "--format", "json"], env).stdout)["accounts"]
    assert all(row["checked_at"] for row in status)
    for row in status[:: len(status) // 10]:
        history = json.loads(_invoke(["history", row["email_address"], "--format", "json"], env).stdout)
        assert len(history["reports"]) == 1


def test_a_run_lock_that_cannot_be_opened_is_a_precise_exit_2(tmp_path: Path) -> None:
    env = {"INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": f"sqlite:///{tmp_path / 'f.db'}"}
    assert _invoke(["add", str(write_jsonl(tmp_path / "a.jsonl", [batch_user(1)]))], env).exit_code == 0
    (tmp_path / "f.db-run.lock").mkdir()
    result = _invoke(["run", "--only", "account"], env)
    assert result.exit_code == 2 and "cannot open the fleet's run lock" in result.stderr, result.stderr
