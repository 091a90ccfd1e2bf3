"""The gate: nothing reaches the platform unless the preflight passed; the limit sent; the exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inboxcheck._errors import OptionsError
from inboxcheck._options import CheckOptions, Family
from inboxcheck.cli import cli
from inboxcheck.platform.connect import connect
from inboxcheck.platform.gate import choose_daily_limit
from inboxcheck.platform.key import ApiKey
from lab.api_double import ApiDouble, Drip, DropAfterBody, RateLimit
from tests.helpers import CANARY, custom_payload, google_payload

KEY = "cs_test_" + "k" * 24
OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


def test_daily_limit_choice() -> None:
    assert choose_daily_limit(None, 30, apply_recommended=False).value == 30
    assert choose_daily_limit(80, 30, apply_recommended=False).value == 80
    assert choose_daily_limit(80, 30, apply_recommended=True).value == 30
    kept = choose_daily_limit(10, 30, apply_recommended=True)
    assert kept.value == 10 and kept.source == "given" and "never raised" in kept.note


async def test_a_passing_account_is_created_with_the_recommended_limit() -> None:
    async with ApiDouble(keys={KEY}) as api:
        result = await connect(
            custom_payload(daily_limit=...), api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url
        )
        assert result.exit_code == 0 and result.created
        assert result.create is not None and result.create.inbox is not None
        assert result.create.inbox.daily_limit == 30
        [create] = api.creates()
        assert create.body is not None and create.body["daily_limit"] == 30
    assert CANARY not in result.model_dump_json()
    assert result.payload["smtp_password"] == "********"


async def test_a_failing_account_makes_no_request_at_all() -> None:
    async with ApiDouble(keys={KEY}) as api:
        result = await connect(
            custom_payload(imap_port=143), api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url
        )
        assert api.log == []
    assert result.gate == "blocked" and result.blocked_by == ("account.tls",)
    assert result.exit_code == 1 and result.create is None


async def test_strict_lets_warnings_block() -> None:
    payload = custom_payload(display_name="JOHN SMITH")
    async with ApiDouble(keys={KEY}) as api:
        lenient = await connect(payload, api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url)
        assert lenient.created
        strict = await connect(
            custom_payload(display_name="JOHN SMITH", email_address="other@example.test"),
            api_key=ApiKey.parse(KEY),
            options=OFFLINE,
            base_url=api.url,
            strict=True,
        )
        assert len(api.creates()) == 1
    assert strict.gate == "blocked" and strict.exit_code == 1


async def test_a_duplicate_is_its_own_outcome() -> None:
    async with ApiDouble(keys={KEY}) as api:
        await connect(custom_payload(), api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url)
        again = await connect(custom_payload(), api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url)
    assert again.create is not None and again.create.finding.code == "api.duplicate"
    assert again.exit_code == 6


async def test_an_unknown_outcome_is_never_retried() -> None:
    async with ApiDouble(keys={KEY}) as api:
        api.misbehave(DropAfterBody())
        result = await connect(custom_payload(), api_key=ApiKey.parse(KEY), options=OFFLINE, base_url=api.url)
        assert len(api.creates()) <= 1
    assert result.create is not None and result.create.finding.code == "api.outcome_unknown"
    assert result.exit_code == 8


def _run(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def _file(tmp_path: Path, payload: dict[str, Any]) -> str:
    path = tmp_path / "account.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


def test_cli_dry_run_masks_secrets_and_sends_nothing(tmp_path: Path) -> None:
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        result = _run(
            [
                "connect",
                _file(tmp_path, custom_payload()),
                "--only",
                "account",
                "--dry-run",
                "--api-url",
                api.url,
            ],
            env={"COLDSEND_API_KEY": KEY},
        )
        assert api.log == []
    assert result.exit_code == 0, result.output
    assert "Dry run: would POST" in result.stdout and '"smtp_password": "********"' in result.stdout
    assert CANARY not in result.output and KEY not in result.output


def test_cli_connect_creates_and_prints_the_inbox(tmp_path: Path) -> None:
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        result = _run(
            [
                "connect",
                _file(tmp_path, custom_payload()),
                "--only",
                "account",
                "--api-url",
                api.url,
                "--api-key-file",
                str(key_file),
            ],
            env={},
        )
    assert result.exit_code == 0, result.output
    assert "Created inbox" in result.stdout and "status PENDING" in result.stdout
    assert CANARY not in result.output and KEY not in result.output


def test_cli_checks_the_key_before_anything_else(tmp_path: Path) -> None:
    result = _run(["connect", str(tmp_path / "missing.json")], env={"COLDSEND_API_KEY": "cs_live_short"})
    assert result.exit_code == 2
    assert "COLDSEND_API_KEY" in result.stderr and "missing.json" not in result.stderr
    none = _run(["connect", _file(tmp_path, google_payload())], env={})
    assert none.exit_code == 2 and "COLDSEND_API_KEY" in none.stderr


@pytest.mark.parametrize("args", [["--format", "json"], []])
def test_cli_wrong_key_is_rejected_with_its_exit_code(tmp_path: Path, args: list[str]) -> None:
    other = "cs_live_" + "z" * 24
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        result = _run(
            ["connect", _file(tmp_path, custom_payload()), "--only", "account", "--api-url", api.url, *args],
            env={"COLDSEND_API_KEY": other},
        )
    assert result.exit_code == 4
    assert "api.key_rejected" in result.stdout
    assert other not in result.output and CANARY not in result.output


@pytest.mark.parametrize("url", ["http://192.0.2.10", "ftp://127.0.0.1", "https://"])
async def test_an_unusable_api_url_is_refused_before_any_login(url: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        payload = custom_payload(smtp_host="127.0.0.1", smtp_port=port, imap_host="127.0.0.1", imap_port=port)
        options = CheckOptions(families=frozenset({Family.SMTP, Family.IMAP}), timeout=1)
        with pytest.raises(OptionsError, match="API URL"):
            await connect(payload, api_key=ApiKey.parse(KEY), options=options, base_url=url)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no login ever knocked


def test_cli_dry_run_checks_the_key_it_is_given(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("not-a-key\n", encoding="utf-8")
    key_file.chmod(0o600)
    account = _file(tmp_path, custom_payload())
    dry = ["connect", account, "--only", "account", "--dry-run"]
    assert _run([*dry, "--api-key-file", str(key_file)], env={}).exit_code == 2
    assert _run(dry, env={"COLDSEND_API_KEY": "not-a-key"}).exit_code == 2
    assert _run(dry, env={}).exit_code == 0  # no key at all is fine for a dry run


def test_cli_api_deadline_ends_a_dripping_create_as_unknown(tmp_path: Path) -> None:
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        api.misbehave(RateLimit("1"), Drip(interval=0.3))
        args = ["connect", _file(tmp_path, custom_payload()), "--only", "account", "--api-url", api.url]
        result = _run([*args, "--api-deadline", "3"], env={"COLDSEND_API_KEY": KEY})
    assert result.exit_code == 8, result.output
    assert "answered HTTP 429; waiting 1 s before trying again" in result.stderr
    assert "3 s deadline" in result.stdout
