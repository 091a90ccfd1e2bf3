"""Fleet accounts that log in with OAuth2, against the lab: Dovecot and Postfix take the tokens for
real (introspected at lab/oauth_double.py), whose token endpoint refreshes, rotates and revokes.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inboxcheck.cli import cli
from inboxcheck.fleet._crypto import new_key_text
from tests.fleet.test_store import _stored_bytes
from tests.helpers import write_jsonl

pytestmark = pytest.mark.lab

USER = "alice@lab.test"
CLIENT_SECRET = "lab-fleet-client-secret-42"


class _Fleet:
    """The fleet commands against one database, every output kept."""

    def __init__(self, lab: Any, fleet_db: str, tmp_path: Path) -> None:
        self.lab, self.tmp_path = lab, tmp_path
        self.env = {"INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": fleet_db}
        host, port = lab.nameserver
        self.check = ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file), "--timeout", "5"]
        self.check += ["--only", "smtp", "--only", "imap", "-q"]
        self.outputs: list[str] = []

    def __call__(self, *args: str, code: int | None = None) -> Result:
        result = CliRunner().invoke(cli, ["fleet", *args], env=self.env, catch_exceptions=False)
        self.outputs.append(result.output + result.stderr)
        if code is not None:
            assert result.exit_code == code, result.output + result.stderr
        return result

    def add(self, refresh_token: str, **oauth: str) -> None:
        payload = {k: v for k, v in self.lab.account(USER).items() if not k.endswith("_password")}
        secret = self.tmp_path / "client-secret"
        secret.write_text(CLIENT_SECRET + "\n")
        payload["oauth"] = {
            "provider": "google",
            "client_id": "lab-client",
            "refresh_token": refresh_token,
            "client_secret_file": str(secret),
            "token_url": self.lab.oauth.token_url,
            **oauth,
        }
        result = self("add", str(write_jsonl(self.tmp_path / "fleet.jsonl", [payload])), code=0)
        assert f"added {USER}" in result.output or f"updated {USER}" in result.output

    def status(self) -> dict[str, Any]:
        [row] = json.loads(self("status", "--format", "json", code=0).stdout)["accounts"]
        return dict(row)

    def last_report(self) -> dict[str, Any]:
        from inboxcheck.fleet import store
        from inboxcheck.fleet._db import connect

        async def read() -> dict[str, Any]:
            engine = await connect(self.env["INBOXCHECK_FLEET_DB"])
            try:
                [entry] = await store.history(engine, USER, limit=1)
                body = await store.report_body(engine, entry["report_id"])
                assert body is not None
                return body
            finally:
                await engine.dispose()

        return asyncio.run(read())


def _checks(report: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c for c in report["checks"]}


def _assert_nowhere(secrets: list[str], fleet: _Fleet, dump: bytes, logs: str) -> None:
    for secret in secrets:
        for form in (secret, base64.b64encode(secret.encode()).decode()):
            assert form.encode() not in dump
            assert all(form not in out for out in fleet.outputs)
            assert form not in logs


def test_an_oauth_account_logs_in_with_tokens_and_its_rotated_refresh_token_is_kept(
    lab: Any, fleet_db: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = _Fleet(lab, fleet_db, tmp_path)
    first = lab.oauth.rotating_refresh_token(USER)
    earlier = len(lab.oauth.issued_refresh_tokens)
    fleet.add(first)
    fleet("run", *fleet.check, code=0)
    checks = _checks(fleet.last_report())
    assert checks["oauth.token"]["status"] == "pass"
    assert checks["oauth.token"]["details"]["new_refresh_token"] is True
    assert checks["smtp.login"]["status"] == "pass", checks["smtp.login"]
    assert "XOAUTH2" in checks["imap.login"]["details"]["auth_mechanism"]
    assert lab.oauth.token_requests[-1]["refresh_token"] == first
    assert lab.oauth.token_requests[-1]["client_secret"] == CLIENT_SECRET
    [rotated] = lab.oauth.issued_refresh_tokens[earlier:]
    # The endpoint retired the first token: a second round works only with the stored rotated one.
    fleet("run", "--all", *fleet.check, code=0)
    assert lab.oauth.token_requests[-1]["refresh_token"] == rotated
    assert fleet.status()["verdict"] in ("pass", "warn")
    assert len(lab.oauth.issued_refresh_tokens[earlier:]) == 2
    dump = _stored_bytes(fleet_db, request)
    assert b"lab-client" in dump  # the dump is of the right database
    issued = lab.oauth.issued_refresh_tokens[earlier:]
    _assert_nowhere([first, *issued, CLIENT_SECRET, lab.oauth.access_token(USER)], fleet, dump, caplog.text)


def test_a_revoked_refresh_token_makes_the_account_broken_with_invalid_grant(
    lab: Any, fleet_db: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = _Fleet(lab, fleet_db, tmp_path)
    token = lab.oauth.rotating_refresh_token(USER)
    earlier = len(lab.oauth.issued_refresh_tokens)
    fleet.add(token)
    fleet("run", *fleet.check, code=0)
    assert fleet.status()["verdict"] in ("pass", "warn")
    # The user withdraws the app's access: the token now stored is revoked at the provider.
    lab.oauth.revoke(lab.oauth.issued_refresh_tokens[-1])
    fleet("run", "--all", *fleet.check, code=1)
    assert fleet.status()["verdict"] in ("pass", "warn"), "one refusal is a suspicion, not broken"
    fleet("run", "--all", *fleet.check, code=1)
    status = fleet.status()
    assert status["verdict"] == "broken"
    assert status["cause"]["code"] == "oauth.token.invalid_grant", status
    checks = _checks(fleet.last_report())
    assert [f["code"] for f in checks["oauth.token"]["findings"]] == ["oauth.token.invalid_grant"]
    # No login was tried without a token (a password is never sent in its place).
    assert checks["smtp.login"]["status"] != "pass"
    dump = _stored_bytes(fleet_db, request)
    issued = lab.oauth.issued_refresh_tokens[earlier:]
    _assert_nowhere([token, *issued, CLIENT_SECRET], fleet, dump, caplog.text)
