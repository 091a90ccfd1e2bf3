from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from inboxcheck._errors import AccountError
from inboxcheck._input import (
    ENV_IMAP_PASSWORD,
    ENV_SMTP_PASSWORD,
    PasswordSource,
    load_account,
    parse_account,
)
from tests.helpers import CANARY, custom_payload


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "account.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _problems(exc: AccountError) -> dict[str, str]:
    return {p.field: p.problem for p in exc.problems}


def test_loads_a_file_and_stdin(tmp_path: Path) -> None:
    text = json.dumps(custom_payload())
    assert load_account(_write(tmp_path, text), env={}).email_address == "sam@example.test"
    assert load_account("-", env={}, stdin=io.StringIO(text)).smtp_port == 587


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ('{"email_address": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('"text"', "expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_files_get_one_clear_message(tmp_path: Path, content: str | bytes, expected: str) -> None:
    with pytest.raises(AccountError) as info:
        load_account(_write(tmp_path, content), env={})
    assert expected in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AccountError, match="no such file"):
        load_account(tmp_path / "nope.json", env={})
    with pytest.raises(AccountError, match="is a directory"):
        load_account(tmp_path, env={})


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(AccountError, match=r"Extra data at line 2, column \d"):
        load_account(_write(tmp_path, '{"a": 1\n}x'), env={})


def test_every_problem_is_listed_once_per_field() -> None:
    payload = custom_payload(smtp_port=70000, imap_port="993", inbox_type="GMAIL", display_name="")
    del payload["smtp_host"]
    with pytest.raises(AccountError) as info:
        parse_account(payload, env={})
    problems = _problems(info.value)
    assert set(problems) == {"smtp_port", "imap_port", "inbox_type", "display_name", "smtp_host"}
    assert "70000" in problems["smtp_port"] and "1 to 65535" in problems["smtp_port"]
    assert "a string" in problems["imap_port"]
    assert "GOOGLE_WORKSPACE" in problems["inbox_type"]
    assert "1-255" in problems["display_name"]
    assert problems["smtp_host"].startswith("is missing")


def test_duplicate_keys_and_typos_are_named() -> None:
    with pytest.raises(AccountError) as info:
        parse_account(
            json.loads('{"smtp_port": 587, "smtp_port": 25}', object_pairs_hook=lambda p: dict(p))
            | custom_payload(smtp_pasword="x"),
            env={},
        )
    assert "did you mean smtp_password" in _problems(info.value)["smtp_pasword"]


def test_duplicate_keys_in_a_file(tmp_path: Path) -> None:
    text = json.dumps(custom_payload())[:-1] + ', "smtp_port": 25}'
    with pytest.raises(AccountError) as info:
        load_account(_write(tmp_path, text), env={})
    assert "more than once" in _problems(info.value)["smtp_port"]


def test_password_values_are_never_echoed() -> None:
    with pytest.raises(AccountError) as info:
        parse_account(custom_payload(smtp_password=CANARY * 50, imap_password=12345), env={})
    text = str(info.value)
    assert CANARY not in text and "12345" not in text
    assert "1-500" in _problems(info.value)["smtp_password"]


def test_passwords_from_the_environment() -> None:
    payload = custom_payload(smtp_password=..., imap_password=...)
    sources = PasswordSource()
    account = parse_account(payload, env={ENV_SMTP_PASSWORD: "smtp-secret"}, sources=sources)
    assert account.smtp_password.get_secret_value() == "smtp-secret"
    assert account.imap_password.get_secret_value() == "smtp-secret"
    assert sources == {"smtp_password": ENV_SMTP_PASSWORD, "imap_password": "the SMTP password"}
    account = parse_account(payload, env={ENV_SMTP_PASSWORD: "a", ENV_IMAP_PASSWORD: "b"})
    assert account.imap_password.get_secret_value() == "b"


def test_file_passwords_win_over_the_environment() -> None:
    account = parse_account(custom_payload(), env={ENV_SMTP_PASSWORD: "other"})
    assert account.smtp_password.get_secret_value() == CANARY


def test_prompt_asks_only_for_what_is_missing() -> None:
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return "typed"

    account = parse_account(custom_payload(smtp_password=..., imap_password=...), env={}, prompt=prompt)
    assert asked == ["SMTP password for sam@example.test"]
    assert account.imap_password.get_secret_value() == "typed"


def test_missing_password_without_env_or_prompt_says_how_to_give_it() -> None:
    with pytest.raises(AccountError) as info:
        parse_account(custom_payload(smtp_password=..., imap_password=...), env={})
    assert ENV_SMTP_PASSWORD in _problems(info.value)["smtp_password"]
    assert ENV_IMAP_PASSWORD in _problems(info.value)["imap_password"]


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ("null", "null"),
        ("true", "a boolean"),
        ("7", "an integer"),
        ("7.5", "a number with a fraction"),
        ('"x"', "a string"),
        ("[]", "a list"),
    ],
)
def test_a_payload_that_is_not_an_object_is_named_by_its_json_type(data: str, said: str) -> None:
    with pytest.raises(AccountError, match=f"expected a JSON object with the account's fields, got {said}"):
        parse_account(json.loads(data), source="x.json")
