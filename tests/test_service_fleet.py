"""``inboxcheck serve --fleet-db``: the fleet over HTTP, a real uvicorn process, a real httpx client.

No lab: adding accounts does not check them. The documents are compared with what the ``fleet``
commands print on the same database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inboxcheck.fleet._crypto import new_key_text
from tests.helpers import CANARY, batch_user, write_jsonl
from tests.test_service import TOKEN, Service

GOOD = "user1@example.test"
OTHER = "user2@example.test"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('fleet-db') / 'fleet.db'}"


@pytest.fixture(scope="module")
def fleet_key() -> str:
    return new_key_text()


@pytest.fixture(scope="module")
def fleet_service(
    tmp_path_factory: pytest.TempPathFactory, database: str, fleet_key: str
) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("fleet-service") / "service.log"
    running = Service(None, log, "--fleet-db", database, env={"INBOXCHECK_FLEET_KEY": fleet_key})
    yield running
    running.stop()


@pytest.fixture
def client(fleet_service: Service) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=fleet_service.url, headers=headers, timeout=60) as http:
        yield http


def _cli(database: str, *args: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "inboxcheck", "fleet", *args, "--db", database, "--format", "json"],
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_fleet_over_http_is_the_fleet_commands_documents(client: httpx.Client, database: str) -> None:
    invalid = batch_user(3, smtp_port="not a port")
    added = client.post("/v1/fleet/accounts", json=[batch_user(1), batch_user(2), invalid])
    assert added.status_code == 200, added.text
    result = added.json()
    assert sorted(result["added"]) == [GOOD, OTHER]
    assert result["updated"] == result["unchanged"] == []
    [refused] = result["refused"]
    assert refused["line"] == 3
    assert refused["email_address"] == "user3@example.test"
    assert [issue["field"] for issue in refused["problems"]] == ["smtp_port"]
    assert CANARY not in added.text

    again = client.post(
        "/v1/fleet/accounts",
        content=json.dumps(batch_user(1)) + "\n" + json.dumps(batch_user(2, display_name="Renamed")),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert again.status_code == 200, again.text
    assert (again.json()["unchanged"], again.json()["updated"], again.json()["added"]) == (
        [GOOD],
        [OTHER],
        [],
    )

    status = client.get("/v1/fleet/accounts")
    assert status.status_code == 200
    assert [a["email_address"] for a in status.json()["accounts"]] == [GOOD, OTHER]
    assert {a["verdict"] for a in status.json()["accounts"]} == {"unknown"}
    assert status.json() == _cli(database, "status")
    assert CANARY not in status.text

    assert client.delete(f"/v1/fleet/accounts/{OTHER}").status_code == 204
    assert [a["email_address"] for a in client.get("/v1/fleet/accounts").json()["accounts"]] == [GOOD]

    history = client.get(f"/v1/fleet/accounts/{GOOD.upper()}/history", params={"limit": 5})
    assert history.status_code == 200, history.text
    assert history.json() == {"email_address": GOOD, "reports": []}
    assert history.json() == _cli(database, "history", GOOD)

    changes = client.get("/v1/fleet/changes", params={"since": "24h"})
    assert changes.status_code == 200, changes.text
    assert changes.json() == {"changes": []} == _cli(database, "changes")


def test_no_password_in_the_log(client: httpx.Client, fleet_service: Service) -> None:
    assert client.post("/v1/fleet/accounts", json=[batch_user(7)]).status_code == 200
    assert client.get("/v1/fleet/accounts").status_code == 200
    log = fleet_service.log.read_text(errors="replace")
    assert "POST /v1/fleet/accounts 200" in log
    assert CANARY not in log


REFRESH = "1//refresh-Canary-Tok3n"
APP_SECRET = "app-Canary-s3cret"


def _oauth_line(i: int, **oauth: str) -> dict[str, object]:
    """The i-th account without its passwords, logging in by an OAuth2 refresh."""
    payload = {k: v for k, v in batch_user(i).items() if not k.endswith("_password")}
    return payload | {
        "oauth": {"provider": "google", "client_id": "app-id", "refresh_token": REFRESH, **oauth}
    }


def _fleet_add(database: str, key: str, path: Path) -> str:
    """``fleet add`` of the file: its output (exit 0 or 2, as it refuses lines)."""
    done = subprocess.run(
        [sys.executable, "-m", "inboxcheck", "fleet", "add", str(path), "--db", database],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "INBOXCHECK_FLEET_KEY": key},
    )
    assert done.returncode in (0, 2), done.stderr
    return done.stdout


def _logins(database: str) -> dict[str, str]:
    listed = _cli(database, "list")
    assert isinstance(listed, dict)
    return {row["email_address"]: row["login"] for row in listed["accounts"]}


def test_oauth_accounts_are_added_as_fleet_add_adds_them_and_no_secret_is_shown(
    client: httpx.Client, fleet_service: Service, database: str, fleet_key: str, tmp_path: Path
) -> None:
    bad = [
        _oauth_line(41, provider="yahoo"),
        _oauth_line(42, refresh_token=" "),
        _oauth_line(43, scope="mail"),
        _oauth_line(44, refresh_token="two words"),
        {k: v for k, v in batch_user(45).items() if not k.endswith("_password")} | {"oauth": "yes"},
    ]
    added = client.post("/v1/fleet/accounts", json=[*bad, _oauth_line(40, client_secret=APP_SECRET)])
    assert added.status_code == 200, added.text
    result = added.json()
    assert result["added"] == ["user40@example.test"]
    problems = [r["problem"] for r in result["refused"]]
    # The messages of fleet add for the same lines (its client secret from a file, not the body).
    out = _fleet_add(database, fleet_key, write_jsonl(tmp_path / "bad.jsonl", bad))
    cli = [
        line.removeprefix("refused ").replace("client_secret_file", "client_secret")
        for line in out.splitlines()
    ]
    assert cli == problems
    assert problems[2].endswith(
        "(allowed: provider, client_id, refresh_token, client_secret, tenant, token_url)"
    )
    assert problems[0] == "line 1: oauth.provider 'yahoo': give one of google, microsoft"
    assert [r["problems"][0]["field"] for r in result["refused"][:4]] == ["oauth"] * 4
    assert [r["email_address"] for r in result["refused"]] == [f"user{i}@example.test" for i in range(41, 46)]
    assert _logins(database)["user40@example.test"] == "oauth2 google"

    # Over HTTP the server reads no file a request names: the secret is in the body.
    secret_file = tmp_path / "secret"
    secret_file.write_text(APP_SECRET)
    by_file = client.post("/v1/fleet/accounts", json=[_oauth_line(46, client_secret_file=str(secret_file))])
    [refusal] = by_file.json()["refused"]
    assert refusal["problem"] == (
        "line 1: oauth.client_secret_file: the server reads no file a request names; give the secret "
        "itself as oauth.client_secret"
    )
    assert by_file.json()["added"] == []
    spaced = client.post("/v1/fleet/accounts", json=[_oauth_line(47, client_secret=f"{APP_SECRET} x")])
    assert spaced.json()["refused"][0]["problem"] == (
        "line 1: oauth.client_secret: holds spaces or control characters; give the secret alone"
    )

    # The same line again leaves it as it is, as fleet add does.
    again = client.post("/v1/fleet/accounts", json=[_oauth_line(40, client_secret=APP_SECRET)])
    assert again.json()["unchanged"] == ["user40@example.test"], again.text

    for text in (
        added.text,
        by_file.text,
        spaced.text,
        again.text,
        fleet_service.log.read_text(errors="replace"),
    ):
        assert REFRESH not in text and APP_SECRET not in text
    stored = Path(database.removeprefix("sqlite:///")).read_bytes()
    assert REFRESH.encode() not in stored and APP_SECRET.encode() not in stored


def test_re_adding_with_passwords_does_what_fleet_add_does(
    client: httpx.Client, database: str, fleet_key: str, tmp_path: Path
) -> None:
    over_http, by_cli = "user50@example.test", "user51@example.test"
    assert client.post("/v1/fleet/accounts", json=[_oauth_line(50)]).json()["added"] == [over_http]
    assert _fleet_add(database, fleet_key, write_jsonl(tmp_path / "a.jsonl", [_oauth_line(51)])) == (
        f"added {by_cli}\n"
    )
    # Both again with their passwords, and no oauth: each logs in with its passwords from now on.
    readded = client.post("/v1/fleet/accounts", json=[batch_user(50)])
    assert readded.json()["updated"] == [over_http], readded.text
    out = _fleet_add(database, fleet_key, write_jsonl(tmp_path / "b.jsonl", [batch_user(51)]))
    assert out == f"updated {by_cli}\n"
    logins = _logins(database)
    assert logins[over_http] == logins[by_cli] == "password"
    # The same address twice in one body: the last line counts, with or without its refresh.
    both = client.post("/v1/fleet/accounts", json=[_oauth_line(50), batch_user(50)])
    assert both.json()["unchanged"] == [over_http], both.text
    out = _fleet_add(
        database, fleet_key, write_jsonl(tmp_path / "c.jsonl", [_oauth_line(51), batch_user(51)])
    )
    assert out == ""
    last = client.post("/v1/fleet/accounts", json=[batch_user(50), _oauth_line(50)])
    assert last.json()["updated"] == [over_http], last.text
    assert _logins(database)[over_http] == "oauth2 google"


def test_unknown_accounts_are_404(client: httpx.Client) -> None:
    for response in (
        client.delete("/v1/fleet/accounts/nobody@example.test"),
        client.get("/v1/fleet/accounts/nobody@example.test/history"),
    ):
        assert response.status_code == 404, response.text
        assert "no such account" in response.json()["detail"]


def test_bad_input_is_a_precise_422(client: httpx.Client) -> None:
    since = client.get("/v1/fleet/changes", params={"since": "last tuesday"})
    assert since.status_code == 422
    assert "since" in since.text
    for bad in (b"[{", b"", b"\xff\xfe"):
        body = client.post("/v1/fleet/accounts", content=bad, headers={"Content-Type": "application/json"})
        assert body.status_code == 422, bad
        assert body.json()["findings"], bad
    line = client.post(
        "/v1/fleet/accounts", content=b"{not json\n", headers={"Content-Type": "application/json"}
    )
    assert line.status_code == 200
    assert "not valid JSON" in line.json()["refused"][0]["problem"]
    assert line.json()["added"] == []
    interval = client.post("/v1/fleet/accounts", params={"interval": 5}, json=[batch_user(1)])
    assert interval.status_code == 422


def test_no_token_is_401(fleet_service: Service) -> None:
    with httpx.Client(base_url=fleet_service.url, timeout=60) as anonymous:
        for method, path in (
            ("GET", "/v1/fleet/accounts"),
            ("POST", "/v1/fleet/accounts"),
            ("DELETE", f"/v1/fleet/accounts/{GOOD}"),
            ("GET", f"/v1/fleet/accounts/{GOOD}/history"),
            ("GET", "/v1/fleet/changes"),
        ):
            response = anonymous.request(method, path)
            assert response.status_code == 401, (method, path)


def test_without_a_key_adding_is_503_and_reading_works(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    running = Service(
        None, tmp_path / "service.log", "--fleet-db", database, env={"INBOXCHECK_FLEET_KEY": ""}
    )
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=60) as http:
            refused = http.post("/v1/fleet/accounts", json=[batch_user(1)])
            assert refused.status_code == 503
            assert "INBOXCHECK_FLEET_KEY" in refused.json()["detail"]
            assert http.get("/v1/fleet/accounts").json() == {"accounts": []}
    finally:
        running.stop()


def test_without_fleet_db_there_are_no_fleet_routes(tmp_path: Path) -> None:
    running = Service(None, tmp_path / "service.log")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=60) as http:
            assert http.get("/v1/fleet/accounts").status_code == 404
        code = "import sys, inboxcheck.service.app; sys.exit('sqlalchemy' in sys.modules)"
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    finally:
        running.stop()
