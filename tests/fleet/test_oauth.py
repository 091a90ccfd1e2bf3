"""Fleet accounts that log in with OAuth2, against the lab: Dovecot and Postfix take the tokens for
real (introspected at lab/oauth_double.py), whose token endpoint refreshes, rotates and revokes.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from inboxcheck._oauth import RefreshRequest
from inboxcheck.cli import cli
from inboxcheck.fleet._crypto import new_key_text
from lab.postgres import Postgres
from tests.fleet.conftest import _create_database
from tests.fleet.test_store import _stored_bytes
from tests.helpers import write_jsonl

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

    def add(self, refresh_token: str, **oauth: str) -> str:
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
        return self("add", str(write_jsonl(self.tmp_path / "fleet.jsonl", [payload])), code=0).stdout

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


@pytest.mark.lab
def test_an_oauth_account_logs_in_with_tokens_and_its_rotated_refresh_token_is_kept(
    lab: Any, fleet_db: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = _Fleet(lab, fleet_db, tmp_path)
    first = lab.oauth.rotating_refresh_token(USER)
    earlier = len(lab.oauth.issued_refresh_tokens)
    assert fleet.add(first) == f"added {USER}\n"
    [listed] = json.loads(fleet("list", "--format", "json", code=0).stdout)["accounts"]
    assert listed["login"] == "oauth2 google"
    assert fleet("list", code=0).stdout.rstrip().endswith(", oauth2 google")
    fleet("run", *fleet.check, code=0)
    checks = _checks(fleet.last_report())
    assert checks["oauth.token"]["status"] == "pass"
    assert checks["oauth.token"]["details"]["new_refresh_token"] is True
    assert checks["smtp.login"]["status"] == "pass", checks["smtp.login"]
    assert "XOAUTH2" in checks["imap.login"]["details"]["auth_mechanism"]
    assert lab.oauth.token_requests[-1]["refresh_token"] == first
    assert lab.oauth.token_requests[-1]["client_secret"] == CLIENT_SECRET
    [rotated] = lab.oauth.issued_refresh_tokens[earlier:]
    # The same file added again: unchanged, the rotated token stands (the file's was retired).
    assert fleet.add(first) == ""
    assert "0 added, 0 updated, 1 unchanged" in fleet.outputs[-1]
    # The endpoint retired the first token: a second round works only with the stored rotated one.
    fleet("run", "--all", *fleet.check, code=0)
    assert lab.oauth.token_requests[-1]["refresh_token"] == rotated
    assert fleet.status()["verdict"] in ("pass", "warn")
    assert len(lab.oauth.issued_refresh_tokens[earlier:]) == 2
    # fleet diagnose refreshes as a run does (and keeps the token it rotates): a third round works.
    diagnosed = fleet("diagnose", USER, "--format", "json", "--no-alternates", *fleet.check)
    checks = _checks(json.loads(diagnosed.stdout)["report"])
    assert checks["oauth.token"]["status"] == "pass" and checks["smtp.login"]["status"] == "pass"
    fleet("run", "--all", *fleet.check, code=0)
    assert lab.oauth.token_requests[-1]["refresh_token"] == lab.oauth.issued_refresh_tokens[-2]
    dump = _stored_bytes(fleet_db, request)
    assert b"lab-client" in dump  # the dump is of the right database
    issued = lab.oauth.issued_refresh_tokens[earlier:]
    _assert_nowhere([first, *issued, CLIENT_SECRET, lab.oauth.access_token(USER)], fleet, dump, caplog.text)


@pytest.mark.lab
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


@pytest.mark.lab
async def test_a_queue_job_refreshes_before_its_logins_and_stores_the_rotated_token(
    lab: Any, postgres: Postgres
) -> None:
    from inboxcheck._input import OAuthTokens, parse_account
    from inboxcheck._options import CheckOptions, Family, parse_nameserver
    from inboxcheck._presets import load_presets
    from inboxcheck.fleet import store
    from inboxcheck.fleet._crypto import FleetKey
    from inboxcheck.fleet._db import connect
    from inboxcheck.fleet.oauth import FleetOAuth
    from inboxcheck.fleet.queue import WorkerState, check_one

    engine = await connect(postgres.url(_create_database(postgres)))
    try:
        key = FleetKey(os.urandom(32))
        payload = {k: v for k, v in lab.account(USER).items() if not k.endswith("_password")}
        account = parse_account(payload, env={}, tokens=OAuthTokens.both(None, "a refresh"))
        first = lab.oauth.rotating_refresh_token(USER)
        earlier = len(lab.oauth.issued_refresh_tokens)
        oauth = RefreshRequest(
            provider="google",
            client_id="lab-client",
            refresh_token=SecretStr(first),
            token_url=lab.oauth.token_url,
        )
        await store.add_accounts(
            engine, [account], key=key, interval=3600, now=time.time(), oauth={USER: oauth}
        )
        host, port = lab.nameserver
        options = CheckOptions(
            nameservers=(parse_nameserver(f"{host}:{port}"),),
            ca_file=lab.ca_file,
            timeout=5,
            families=frozenset({Family.SMTP, Family.IMAP}),
        )
        state = WorkerState(engine=engine, key=key, options=options, presets=load_presets())
        plan = await store.begin_round(engine, all_accounts=True, now=time.time())
        assert plan is not None
        [account_id] = plan.remaining
        assert await check_one(state, account_id=account_id, round_id=plan.round_id) in ("pass", "warn")
        assert lab.oauth.token_requests[-1]["refresh_token"] == first
        [rotated] = lab.oauth.issued_refresh_tokens[earlier:]
        refresh: dict[int, FleetOAuth] = {}
        await store.load_accounts(engine, [account_id], key=key, refresh=refresh)
        assert refresh[account_id].request.refresh_token.get_secret_value() == rotated
        [entry] = await store.history(engine, USER, limit=1)
        body = await store.report_body(engine, entry["report_id"])
        assert body is not None
        assert _checks(body)["oauth.token"]["status"] == "pass"
        assert "XOAUTH2" in _checks(body)["imap.login"]["details"]["auth_mechanism"]
    finally:
        await engine.dispose()


def test_add_refuses_a_bad_oauth_object_precisely_and_never_shows_its_secrets(
    fleet_db: str, tmp_path: Path
) -> None:
    from tests.helpers import batch_user

    env = {"INBOXCHECK_FLEET_KEY": new_key_text(), "INBOXCHECK_FLEET_DB": fleet_db}
    token = "Refresh-token-never-shown-77"
    good = {"provider": "google", "client_id": "app", "refresh_token": token}

    def line(i: int, **oauth: Any) -> dict[str, Any]:
        payload = {k: v for k, v in batch_user(i).items() if not k.endswith("_password")}
        return payload | {"oauth": {**good, **oauth}}

    rows = [
        line(0),
        line(1, provider="yahoo"),
        line(2, refresh_token=""),
        line(3, token_url="http://oauth.example.com/token"),
        line(4, client_secret_file=str(tmp_path / "missing")),
        line(5, scope="x"),
        {k: v for k, v in batch_user(6).items() if not k.endswith("_password")} | {"oauth": "yes"},
        batch_user(7) | {"oauth": None},
        {k: v for k, v in batch_user(8).items() if not k.endswith("_password")} | {"oauth": None},
    ]
    result = CliRunner().invoke(
        cli, ["fleet", "add", str(write_jsonl(tmp_path / "in.jsonl", rows))], env=env, catch_exceptions=False
    )
    assert result.exit_code == 2
    out = result.stdout
    assert "added user0@example.test" in out and "added user7@example.test" in out
    assert "refused line 2: oauth.provider 'yahoo': give one of google, microsoft" in out
    assert "refused line 3: oauth.refresh_token: give a non-empty string" in out
    assert "refused line 4: oauth.token_url 'http://oauth.example.com/token'" in out
    assert "refused line 5: client secret file" in out and "no such file" in out
    assert "refused line 6: oauth.scope: not a field of oauth" in out
    assert "refused line 7: oauth: give an object" in out
    assert "refused line 9" in out and "smtp_password" in out  # no oauth: the passwords are needed
    assert token not in out + result.stderr
    # The same file to check --batch: oauth is no field of the platform's payload.
    checked = CliRunner().invoke(
        cli, ["check", "--batch", str(tmp_path / "in.jsonl"), "--only", "account", "--format", "json"], env={}
    )
    assert token not in checked.output and "oauth" in checked.output


@pytest.mark.lab
def test_an_unreachable_token_endpoint_makes_the_account_degraded_not_broken(
    lab: Any, fleet_db: str, tmp_path: Path
) -> None:
    import socket

    fleet = _Fleet(lab, fleet_db, tmp_path)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    fleet.add(lab.oauth.rotating_refresh_token(USER), token_url=f"http://127.0.0.1:{port}/token")
    fleet("run", *fleet.check, code=3)
    fleet("run", "--all", *fleet.check, code=3)
    status = fleet.status()
    assert status["verdict"] == "degraded", status
    assert status["cause"]["code"] == "oauth.token.unavailable", status
