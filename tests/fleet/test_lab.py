"""The fleet end to end against the lab: add, run, break an account, see it broken with the server's
reply before and after, one signed webhook, and recovered after the fix. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inboxcheck.cli import cli
from inboxcheck.fleet._crypto import new_key_text
from tests.fleet.receiver import SECRET, Receiver
from tests.helpers import write_jsonl

pytestmark = pytest.mark.lab


def _invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, ["fleet", *args], env=env, catch_exceptions=False)


def test_a_broken_account_is_named_with_what_changed_signalled_once_and_recovers(
    lab: Any, fleet_db: str, tmp_path: Path, receiver: Receiver
) -> None:
    env = {
        "INBOXCHECK_FLEET_KEY": new_key_text(),
        "INBOXCHECK_FLEET_DB": fleet_db,
        "INBOXCHECK_WEBHOOK_SECRET": SECRET,
    }
    host, port = lab.nameserver
    check = ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file), "--timeout", "5", "-q"]
    alice, bob = lab.account("alice"), lab.account("bob")
    passwords = {alice["smtp_password"], bob["smtp_password"], "Wrong-pw-4411"}
    outputs: list[str] = []

    def run(*args: str, code: int | None = None) -> Result:
        result = _invoke(list(args), env)
        outputs.append(result.output + result.stderr)
        if code is not None:
            assert result.exit_code == code, result.output + result.stderr
        return result

    def status() -> dict[str, str]:
        rows = json.loads(run("status", "--format", "json", code=0).stdout)["accounts"]
        return {row["email_address"]: row["verdict"] for row in rows}

    run("add", str(write_jsonl(tmp_path / "fleet.jsonl", [alice, bob])), code=0)
    run("webhook", "add", receiver.url, code=0)
    run("run", *check)
    assert set(status().values()) <= {"pass", "warn"}

    # The password changes at the provider: the store's no longer works.
    broken = bob | {"smtp_password": "Wrong-pw-4411", "imap_password": "Wrong-pw-4411"}
    run("add", str(write_jsonl(tmp_path / "broken.jsonl", [broken])), code=0)
    assert run("run", *check).exit_code == 1
    assert status()["bob@lab.test"] in ("pass", "warn"), "one failure is a suspicion, not broken"
    assert receiver.posts == []
    run("run", "--all", *check)
    now = status()
    assert now["bob@lab.test"] == "broken" and now["alice@lab.test"] in ("pass", "warn")
    [cause] = [
        r["cause"]
        for r in json.loads(run("status", "--format", "json").stdout)["accounts"]
        if r["email_address"] == "bob@lab.test"
    ]
    assert "auth" in cause["code"], cause

    [change] = json.loads(run("changes", "--format", "json", code=0).stdout)["changes"][-1:]
    assert change["email_address"] == "bob@lab.test" and change["to"] == "broken"
    assert any("auth" in code for code in change["appeared"]), change
    replies = [e for e in change["evidence"] if e["what"].endswith("reply")]
    assert any(isinstance(e["after"], str) and e["after"].startswith("535") for e in replies), change[
        "evidence"
    ]
    assert any(isinstance(e["before"], str) and e["before"].startswith("235") for e in replies), change[
        "evidence"
    ]

    [event] = receiver.events()
    assert event["type"] == "inbox.broken" and event["data"]["email_address"] == "bob@lab.test"
    assert event["id"].startswith("evt_") and event["data"]["appeared"] == change["appeared"]

    diagnosed = run("diagnose", "bob@lab.test", *check[:-1], "--no-alternates", "--format", "json")
    assert diagnosed.exit_code == 1, diagnosed.stderr
    diagnosis = json.loads(diagnosed.stdout)
    assert "auth" in diagnosis["causes"][0]["code"]
    assert diagnosis["since_last_pass"]["appeared"] == change["appeared"]
    text = run("diagnose", "bob@lab.test", *check[:-1], "--no-alternates").stdout
    assert "What changed since the last passing report:" in text and "535" in text
    # The same from `inboxcheck diagnose --fleet`: no password typed, the fleet's history as previous.
    alias = CliRunner().invoke(
        cli,
        ["diagnose", "--fleet", "bob@lab.test", *check[:-1], "--no-alternates", "--format", "json"],
        env=env,
    )
    outputs.append(alias.output + alias.stderr)
    assert alias.exit_code == 1, alias.stderr
    assert json.loads(alias.stdout)["since_last_pass"]["appeared"] == change["appeared"]

    # Fixed: the next run recovers it, and says so once.
    run("add", str(write_jsonl(tmp_path / "fixed.jsonl", [bob])), code=0)
    run("run", *check)
    assert status()["bob@lab.test"] in ("pass", "warn")
    events = receiver.events()
    assert [e["type"] for e in events] == ["inbox.broken", "inbox.recovered"]
    history = json.loads(run("history", "bob@lab.test", "--format", "json", code=0).stdout)["reports"]
    assert [r["state"] for r in history][:2] == [status()["bob@lab.test"], "broken"]
    log = [json.loads(line) for line in run("webhook", "log", code=0).stdout.splitlines()]
    assert [row["status"] for row in log] == ["delivered", "delivered"]

    everything = "".join(outputs) + "".join(body.decode() for _, body in receiver.posts)
    for password in passwords:
        assert password not in everything
