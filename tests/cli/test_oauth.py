"""The --oauth-* options and INBOXCHECK_*_OAUTH_TOKEN, through the command against the lab."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inboxcheck.cli import cli

USER = "alice@lab.test"


def _run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def _lab_args(lab: Any) -> list[str]:
    address, port = lab.nameserver
    return [
        "--nameserver",
        f"{address}:{port}",
        "--ca-file",
        str(lab.ca_file),
        "--only",
        "smtp",
        "--only",
        "imap",
    ]


def _payload_without_passwords(lab: Any, tmp_path: Path) -> str:
    payload = {k: v for k, v in lab.account(USER).items() if not k.endswith("_password")}
    path = tmp_path / "account.json"
    path.write_text(json.dumps(payload))
    return str(path)


def _secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


def _checks(result: Result) -> dict[str, Any]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


@pytest.mark.lab
def test_a_token_file_logs_in_without_any_password(lab: Any, tmp_path: Path) -> None:
    token = lab.oauth.access_token(USER)
    account = _payload_without_passwords(lab, tmp_path)
    args = ["check", account, "--format", "json", "--oauth-token-file", _secret(tmp_path, "t", token)]
    result = _run([*args, *_lab_args(lab)])
    checks = _checks(result)
    assert checks["smtp.login"]["status"] == "pass", checks["smtp.login"]
    assert checks["imap.login"]["details"]["auth_mechanism"] == "AUTHENTICATE XOAUTH2"
    assert token not in result.output
    assert result.exit_code == 0


@pytest.mark.lab
def test_the_environments_token_logs_in(lab: Any, tmp_path: Path) -> None:
    token = lab.oauth.access_token(USER)
    account = _payload_without_passwords(lab, tmp_path)
    result = _run(
        ["check", account, "--format", "json", *_lab_args(lab)], {"INBOXCHECK_SMTP_OAUTH_TOKEN": token}
    )
    checks = _checks(result)
    assert checks["smtp.login"]["status"] == "pass"
    assert checks["imap.login"]["status"] == "pass", "IMAP defaults to the SMTP token"
    assert token not in result.output


@pytest.mark.lab
def test_a_refresh_through_the_cli_logs_in_and_reports_the_token_result(lab: Any, tmp_path: Path) -> None:
    account = _payload_without_passwords(lab, tmp_path)
    refresh = lab.oauth.refresh_token(USER)
    args = [
        "check",
        account,
        "--format",
        "json",
        "--oauth-provider",
        "google",
        "--oauth-client-id",
        "lab-client",
        "--oauth-refresh-token-file",
        _secret(tmp_path, "rt", refresh),
        "--oauth-client-secret-file",
        _secret(tmp_path, "cs", "lab-client-secret-value"),
        "--oauth-token-url",
        lab.oauth.token_url,
    ]
    result = _run([*args, *_lab_args(lab)])
    checks = _checks(result)
    assert checks["oauth.token"]["status"] == "pass"
    assert checks["smtp.login"]["status"] == "pass"
    assert lab.oauth.token_requests[-1]["client_secret"] == "lab-client-secret-value"
    for secret in (refresh, "lab-client-secret-value", lab.oauth.access_token(USER)):
        assert secret not in result.output


@pytest.mark.lab
def test_a_revoked_refresh_token_fails_with_its_code(lab: Any, tmp_path: Path) -> None:
    account = _payload_without_passwords(lab, tmp_path)
    args = ["check", account, "--format", "json", "--oauth-provider", "microsoft", "--oauth-client-id", "c"]
    args += ["--oauth-refresh-token-file", _secret(tmp_path, "rt", "expired"), "--oauth-token-url"]
    result = _run([*args, lab.oauth.token_url, *_lab_args(lab)])
    checks = _checks(result)
    assert [f["code"] for f in checks["oauth.token"]["findings"]] == ["oauth.token.refresh_expired"]
    assert checks["smtp.login"]["status"] == "skipped"
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--oauth-client-id", "x"], "--oauth-client-id goes with --oauth-provider"),
        (["--oauth-provider", "google"], "--oauth-provider needs --oauth-client-id"),
        (["--oauth-token-file", "/nonexistent/token"], "no such file"),
        (
            [
                "--oauth-provider",
                "google",
                "--oauth-client-id",
                "x",
                "--oauth-refresh-token-file",
                "RT",
                "--oauth-token-url",
                "http://oauth.example.com/token",
            ],
            "only over https",
        ),
    ],
)
def test_bad_oauth_options_exit_2_with_a_precise_message(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    account = tmp_path / "a.json"
    account.write_text("{}")
    extra = [_secret(tmp_path, "rt", "some-refresh-token") if e == "RT" else e for e in extra]
    result = _run(["check", str(account), *extra])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("given", ["file", "env"])
def test_connect_never_sends_a_token_in_a_passwords_place(tmp_path: Path, given: str) -> None:
    # The create call carries passwords the platform keeps; an access token lasts an hour.
    from tests.helpers import custom_payload

    payload = custom_payload()
    del payload["smtp_password"], payload["imap_password"]
    account = tmp_path / "account.json"
    account.write_text(json.dumps(payload), encoding="utf-8")
    token = tmp_path / "token"
    token.write_text("ya29.a-token-for-the-test\n", encoding="utf-8")
    args = ["connect", str(account), "--dry-run", "--only", "account"]
    env = {"INBOXCHECK_SMTP_OAUTH_TOKEN": "ya29.a-token-for-the-test"} if given == "env" else {}
    if given == "file":
        args += ["--oauth-token-file", str(token)]
    result = _run(args, env=env)
    assert result.exit_code == 2, result.output
    assert "no OAuth2 field" in result.stderr
    assert "ya29.a-token-for-the-test" not in result.output + result.stderr
