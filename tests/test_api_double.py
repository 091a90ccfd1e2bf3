"""The API double enforces the platform's documented contract, field by field, and misbehaves on cue.

Driven with plain httpx (not inboxcheck's client), so that a lenient double cannot hide a lenient
client: every limit of the contract table is tried on both sides of its boundary.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from lab.api_double import (
    DEFAULT_BULK_PATH,
    DEFAULT_PATH,
    MAX_DAILY_LIMIT,
    ApiDouble,
    DropAfterBody,
    RateLimit,
    ResetBeforeRead,
    Respond,
    ServerError,
    Slow,
    Stall,
    validate_account,
)

KEY = "cs_test_doubleKEYcanary000000001"
LIVE_KEY = "cs_live_doubleKEYcanary000000002"
PASSWORD = "Double-Canary-Pa55!"


def body(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email_address": "john@company.com",
        "display_name": "John Smith",
        "inbox_type": "GOOGLE_WORKSPACE",
        "daily_limit": 50,
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "smtp_username": "john@company.com",
        "smtp_password": PASSWORD,
        "smtp_use_tls": True,
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "imap_username": "john@company.com",
        "imap_password": PASSWORD,
        "imap_use_ssl": True,
    }
    data.update(changes)
    return data


@pytest.fixture
async def api() -> AsyncIterator[ApiDouble]:
    async with ApiDouble(keys={KEY, LIVE_KEY}) as double:
        yield double


@pytest.fixture
async def http(api: ApiDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        yield client


async def post(
    http: httpx.AsyncClient,
    data: Any,
    *,
    key: str | None = KEY,
    path: str = DEFAULT_PATH,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["X-API-Key"] = key
    content = data if isinstance(data, bytes) else json.dumps(data).encode()
    return await http.post(path, content=content, headers=sent)


# ---------------------------------------------------------------------------------------------------
# Success, duplicates, idempotency
# ---------------------------------------------------------------------------------------------------


async def test_created_body_is_the_documented_one(api: ApiDouble, http: httpx.AsyncClient) -> None:
    response = await post(http, body())
    assert response.status_code == 201
    data = response.json()
    assert set(data) >= {
        "id",
        "email_address",
        "display_name",
        "inbox_type",
        "daily_limit",
        "status",
        "created_at",
    }
    assert data["email_address"] == "john@company.com"
    assert data["display_name"] == "John Smith"
    assert data["inbox_type"] == "GOOGLE_WORKSPACE"
    assert data["daily_limit"] == 50
    assert data["status"] == "PENDING"
    assert data["created_at"].endswith("Z")
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert PASSWORD not in response.text
    assert response.headers["x-request-id"].startswith("req_")
    assert api.accounts["john@company.com"]["id"] == data["id"]


async def test_optional_fields_take_the_platform_defaults(http: httpx.AsyncClient) -> None:
    data = body()
    for name in ("daily_limit", "smtp_use_tls", "imap_use_ssl"):
        del data[name]
    response = await post(http, data)
    assert response.status_code == 201
    assert response.json()["daily_limit"] == 100


async def test_initial_status_active() -> None:
    async with (
        ApiDouble(keys={KEY}, initial_status="ACTIVE") as double,
        httpx.AsyncClient(base_url=double.url) as http,
    ):
        response = await post(http, body())
    assert response.json()["status"] == "ACTIVE"
    with pytest.raises(ValueError, match="PENDING or ACTIVE"):
        ApiDouble(keys={KEY}, initial_status="PAUSED")


async def test_second_create_of_an_address_is_409(api: ApiDouble, http: httpx.AsyncClient) -> None:
    assert (await post(http, body())).status_code == 201
    second = await post(http, body(email_address="JOHN@Company.com", display_name="Other"))
    assert second.status_code == 409
    assert "already exists" in second.json()["detail"]
    assert len(api.accounts) == 1
    assert [r.outcome for r in api.creates()] == ["created", "duplicate"]


async def test_idempotency_key_replays_the_original_answer(api: ApiDouble, http: httpx.AsyncClient) -> None:
    first = await post(http, body(), headers={"Idempotency-Key": "k1"})
    again = await post(http, body(), headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await post(http, body(display_name="Changed"), headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert "different request body" in other.json()["detail"]
    fresh = await post(http, body(), headers={"Idempotency-Key": "k2"})
    assert fresh.status_code == 409
    assert len(api.accounts) == 1


async def test_idempotency_keys_are_scoped_to_the_api_key(http: httpx.AsyncClient) -> None:
    await post(http, body(), headers={"Idempotency-Key": "k1"})
    other = await post(http, body(), key=LIVE_KEY, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409


async def test_a_double_that_ignores_idempotency_keys() -> None:
    async with (
        ApiDouble(keys={KEY}, honour_idempotency=False) as double,
        httpx.AsyncClient(base_url=double.url) as http,
    ):
        await post(http, body(), headers={"Idempotency-Key": "k1"})
        again = await post(http, body(), headers={"Idempotency-Key": "k1"})
    assert again.status_code == 409


# ---------------------------------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status", "outcome"),
    [
        (None, 401, "key_missing"),
        ("", 401, "key_missing"),
        ("cs_test_short", 401, "key_malformed"),
        ("sk_test_doubleKEYcanary000000001", 401, "key_malformed"),
        ("cs_test_doubleKEYcanary00000000!", 401, "key_malformed"),
        ("cs_test_doubleKEYcanary000000009", 403, "key_unknown"),
        (LIVE_KEY, 201, "created"),
    ],
)
async def test_key_checks(
    api: ApiDouble, http: httpx.AsyncClient, key: str | None, status: int, outcome: str
) -> None:
    response = await post(http, body(), key=key)
    assert response.status_code == status
    assert api.log[-1].outcome == outcome
    assert "doubleKEYcanary" not in response.text


async def test_the_key_is_checked_before_the_body(http: httpx.AsyncClient) -> None:
    assert (await post(http, b"not json", key=None)).status_code == 401
    assert (await post(http, {"nonsense": 1}, key="cs_test_unknownkey0000000000")).status_code == 403


async def test_the_log_masks_key_and_passwords(api: ApiDouble, http: httpx.AsyncClient) -> None:
    await post(http, body(), headers={"Authorization": "Bearer x", "Idempotency-Key": "i-1"})
    await post(http, body(), key="cs_test_bad!")
    await post(http, b"{broken", key=KEY)
    entry = api.log[0]
    assert entry.method == "POST"
    assert entry.path == DEFAULT_PATH
    assert entry.headers["x-api-key"] == "cs_test_…0001"
    assert entry.headers["authorization"] == "********"
    assert entry.idempotency_key == "i-1"
    assert entry.body["smtp_password"] == entry.body["imap_password"] == "********"
    assert entry.body["smtp_username"] == "john@company.com"
    assert api.log[1].headers["x-api-key"] == "[malformed key, 12 characters]"
    assert api.log[2].body == "[not JSON, 7 bytes]"
    everything = repr(api.log)
    assert KEY not in everything
    assert PASSWORD not in everything


# ---------------------------------------------------------------------------------------------------
# The body, field by field
# ---------------------------------------------------------------------------------------------------

VALID_EDGES: list[tuple[str, Any]] = [
    ("email_address", "a@b.c"),
    ("email_address", "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 62),
    ("display_name", "J"),
    ("display_name", "J" * 255),
    ("smtp_host", "h"),
    ("smtp_host", "h" * 255),
    ("imap_host", "h" * 255),
    ("smtp_username", "u"),
    ("imap_username", "u" * 255),
    ("smtp_password", "p"),
    ("smtp_password", "p" * 500),
    ("imap_password", "p" * 500),
    ("smtp_port", 1),
    ("smtp_port", 65535),
    ("imap_port", 1),
    ("imap_port", 65535),
    ("daily_limit", 1),
    ("daily_limit", 2000),
    ("smtp_use_tls", False),
    ("imap_use_ssl", False),
    ("inbox_type", "CUSTOM_SMTP"),
    ("inbox_type", "OUTLOOK_365"),
]

INVALID_EDGES: list[tuple[str, Any, str]] = [
    ("email_address", "ab@c.", "value_error"),
    ("email_address", "a@bc", "string_too_short"),
    ("email_address", "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63, "string_too_long"),
    ("email_address", "john.company.com", "value_error"),
    ("email_address", "john@@company.com", "value_error"),
    ("email_address", "john@company", "value_error"),
    ("email_address", ".john@company.com", "value_error"),
    ("email_address", "jo hn@company.com", "value_error"),
    ("email_address", 12345, "string_type"),
    ("display_name", "", "string_too_short"),
    ("display_name", "J" * 256, "string_too_long"),
    ("display_name", None, "string_type"),
    ("smtp_host", "", "string_too_short"),
    ("smtp_host", "h" * 256, "string_too_long"),
    ("imap_host", "", "string_too_short"),
    ("imap_host", "h" * 256, "string_too_long"),
    ("smtp_username", "", "string_too_short"),
    ("smtp_username", "u" * 256, "string_too_long"),
    ("imap_username", "", "string_too_short"),
    ("imap_username", "u" * 256, "string_too_long"),
    ("smtp_password", "", "string_too_short"),
    ("smtp_password", "p" * 501, "string_too_long"),
    ("imap_password", "", "string_too_short"),
    ("imap_password", "p" * 501, "string_too_long"),
    ("imap_password", 1234, "string_type"),
    ("smtp_port", 0, "greater_than_equal"),
    ("smtp_port", 65536, "less_than_equal"),
    ("smtp_port", "587", "int_type"),
    ("smtp_port", 587.0, "int_type"),
    ("smtp_port", True, "int_type"),
    ("imap_port", 0, "greater_than_equal"),
    ("imap_port", 65536, "less_than_equal"),
    ("imap_port", None, "int_type"),
    ("inbox_type", "GMAIL", "enum"),
    ("inbox_type", "google_workspace", "enum"),
    ("inbox_type", ["GOOGLE_WORKSPACE"], "enum"),
    ("daily_limit", 0, "greater_than_equal"),
    ("daily_limit", -1, "greater_than_equal"),
    ("daily_limit", 2001, "less_than_equal"),
    ("daily_limit", "50", "int_type"),
    ("daily_limit", 50.5, "int_type"),
    ("daily_limit", None, "int_type"),
    ("daily_limit", False, "int_type"),
    ("smtp_use_tls", "true", "bool_type"),
    ("smtp_use_tls", 1, "bool_type"),
    ("imap_use_ssl", None, "bool_type"),
]


@pytest.mark.parametrize(("name", "value"), VALID_EDGES)
async def test_accepts_values_at_the_limits(http: httpx.AsyncClient, name: str, value: Any) -> None:
    response = await post(http, body(**{name: value}))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("name", "value", "kind"), INVALID_EDGES)
async def test_rejects_values_past_the_limits_naming_the_field(
    api: ApiDouble, http: httpx.AsyncClient, name: str, value: Any, kind: str
) -> None:
    response = await post(http, body(**{name: value}))
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", name]
    assert error["type"] == kind
    assert error["msg"]
    assert api.accounts == {}
    assert PASSWORD not in response.text


@pytest.mark.parametrize(("inbox_type", "maximum"), list(MAX_DAILY_LIMIT.items()))
async def test_daily_limit_maximum_per_inbox_type(
    http: httpx.AsyncClient, inbox_type: str, maximum: int
) -> None:
    over = await post(http, body(inbox_type=inbox_type, daily_limit=maximum + 1))
    assert over.status_code == 422
    assert over.json()["detail"][0]["loc"] == ["body", "daily_limit"]
    assert str(maximum) in over.json()["detail"][0]["msg"]
    at = await post(http, body(inbox_type=inbox_type, daily_limit=maximum))
    assert at.status_code == 201


def test_the_documented_maximums() -> None:
    assert MAX_DAILY_LIMIT == {
        "GOOGLE_WORKSPACE": 2000,
        "OUTLOOK_365": 10000,
        "CUSTOM_SMTP": 100000,
    }


@pytest.mark.parametrize(
    "name",
    [
        "email_address",
        "display_name",
        "inbox_type",
        "smtp_host",
        "smtp_port",
        "smtp_username",
        "smtp_password",
        "imap_host",
        "imap_port",
        "imap_username",
        "imap_password",
    ],
)
async def test_required_fields(http: httpx.AsyncClient, name: str) -> None:
    data = body()
    del data[name]
    response = await post(http, data)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["body", name], "msg": "Field required."}]


async def test_unknown_fields_are_rejected(http: httpx.AsyncClient) -> None:
    response = await post(http, body(warmup_enabled=True))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "warmup_enabled"]
    assert response.json()["detail"][0]["type"] == "extra_forbidden"


async def test_errors_echo_inputs_but_never_passwords(http: httpx.AsyncClient) -> None:
    long_password = PASSWORD * 30
    response = await post(
        http,
        body(smtp_password=long_password, imap_password=42, smtp_port=0, display_name=""),
    )
    assert response.status_code == 422
    inputs = {e["loc"][1]: e["input"] for e in response.json()["detail"]}
    assert inputs == {
        "smtp_password": "********",
        "imap_password": "********",
        "smtp_port": 0,
        "display_name": "",
    }
    assert PASSWORD not in response.text
    assert KEY not in response.text


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b'{"a": ', "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'"text"', "application/json", 422),
        (json.dumps(body()).encode(), "text/plain", 415),
        (json.dumps(body()).encode(), "application/json; charset=utf-8", 201),
    ],
)
async def test_the_body_must_be_a_json_object(
    http: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    response = await http.post(
        DEFAULT_PATH, content=content, headers={"X-API-Key": KEY, "Content-Type": content_type}
    )
    assert response.status_code == status


def test_validate_account_reports_every_problem_at_once() -> None:
    errors = validate_account(body(smtp_port=0, imap_port=0, extra=1, display_name=""))
    assert sorted(e["loc"][1] for e in errors) == ["display_name", "extra", "imap_port", "smtp_port"]
    assert validate_account(body()) == []


async def test_routes(http: httpx.AsyncClient, api: ApiDouble) -> None:
    assert (await post(http, body(), path="/api/public/v1/other")).status_code == 404
    response = await http.delete(DEFAULT_PATH, headers={"X-API-Key": KEY})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    await post(http, body())
    listed = await http.get(DEFAULT_PATH, headers={"X-API-Key": KEY})
    assert listed.status_code == 200
    assert [i["email_address"] for i in listed.json()["items"]] == ["john@company.com"]
    assert (await http.get(DEFAULT_PATH)).status_code == 401


async def test_chunked_bodies_are_refused(http: httpx.AsyncClient, api: ApiDouble) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps(body()).encode()

    response = await http.post(
        DEFAULT_PATH,
        content=chunks(),
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 411
    assert api.accounts == {}


# ---------------------------------------------------------------------------------------------------
# Bulk
# ---------------------------------------------------------------------------------------------------


async def test_bulk(http: httpx.AsyncClient, api: ApiDouble) -> None:
    await post(http, body(email_address="taken@company.com"))
    accounts = [
        body(email_address="a@company.com"),
        body(email_address="b@company.com", imap_port=0),
        body(email_address="taken@company.com"),
    ]
    response = await post(http, {"accounts": accounts}, path=DEFAULT_BULK_PATH)
    assert response.status_code == 202
    data = response.json()
    assert data["job_id"].startswith("job_")
    assert [r["status"] for r in data["results"]] == ["CREATED", "FAILED", "FAILED"]
    assert data["results"][1]["errors"] == [{"field": "imap_port", "message": "Port must be 1-65535."}]
    assert data["results"][0]["id"] == api.accounts["a@company.com"]["id"]
    assert PASSWORD not in response.text


@pytest.mark.parametrize(
    "data",
    [{"accounts": []}, {"accounts": [body()] * 101}, {"items": [body()]}, [body()], {"accounts": {}}],
)
async def test_bulk_limits(http: httpx.AsyncClient, api: ApiDouble, data: Any) -> None:
    response = await post(http, data, path=DEFAULT_BULK_PATH)
    assert response.status_code == 422
    assert api.accounts == {}


async def test_bulk_of_100_is_accepted(http: httpx.AsyncClient, api: ApiDouble) -> None:
    accounts = [body(email_address=f"u{i}@company.com") for i in range(100)]
    response = await post(http, {"accounts": accounts}, path=DEFAULT_BULK_PATH)
    assert response.status_code == 202
    assert len(api.accounts) == 100


# ---------------------------------------------------------------------------------------------------
# Misbehaviour
# ---------------------------------------------------------------------------------------------------


async def test_rate_limit(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(RateLimit("5"), RateLimit(None))
    first = await post(http, body())
    second = await post(http, body())
    third = await post(http, body())
    assert (first.status_code, first.headers["retry-after"]) == (429, "5")
    assert second.status_code == 429
    assert "retry-after" not in second.headers
    assert third.status_code == 201
    assert [r.outcome for r in api.creates()] == ["rate_limited", "rate_limited", "created"]


async def test_server_errors(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(ServerError(503, retry_after="2"), ServerError(500, after_create=True))
    unavailable = await post(http, body())
    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "2")
    assert api.accounts == {}
    late = await post(http, body())
    assert late.status_code == 500
    assert len(api.accounts) == 1
    assert [r.outcome for r in api.creates()] == ["server_error", "server_error_after_created"]


async def test_drop_after_body(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(DropAfterBody(), DropAfterBody(process=False))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(http, body())
    assert len(api.accounts) == 1
    with pytest.raises(httpx.RemoteProtocolError):
        await post(http, body(email_address="other@company.com"))
    assert len(api.accounts) == 1
    assert [r.outcome for r in api.creates()] == ["dropped_after_created", "dropped_unprocessed"]
    assert all(r.status is None for r in api.creates())


async def test_reset_before_read(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(ResetBeforeRead())
    with pytest.raises((httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        await post(http, body())
    assert api.creates() == []
    assert api.accounts == {}
    assert (await post(http, body())).status_code == 201


async def test_stall_until_the_client_gives_up(api: ApiDouble) -> None:
    api.misbehave(Stall())
    async with httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(5, read=0.1)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await post(http, body())
    assert [r.outcome for r in api.creates()] == ["stalled_after_created"]


async def test_stall_ends_when_the_double_stops() -> None:
    double = ApiDouble(keys={KEY})
    await double.start()
    double.misbehave(Stall())
    async with httpx.AsyncClient(base_url=double.url, timeout=5) as http:
        request = asyncio.ensure_future(post(http, body()))
        await double.wait_for_requests(1)
        await double.stop()
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await request


async def test_slow(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(Slow(0.01))
    assert (await post(http, body())).status_code == 201


async def test_respond_canned_and_echo(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(
        Respond(418, {"x": 1}, {"X-Extra": "y"}),
        Respond(400, text="plain"),
        Respond(422, echo_request=True),
    )
    teapot = await post(http, body())
    assert (teapot.status_code, teapot.json(), teapot.headers["x-extra"]) == (418, {"x": 1}, "y")
    plain = await post(http, body())
    assert (plain.status_code, plain.text) == (400, "plain")
    assert plain.headers["content-type"].startswith("text/plain")
    echoed = await post(http, body())
    assert PASSWORD in echoed.text  # the careless server, on purpose
    assert api.accounts == {}
    assert PASSWORD not in repr(api.log)


async def test_misbehaviours_apply_in_order_one_each(http: httpx.AsyncClient, api: ApiDouble) -> None:
    api.misbehave(RateLimit("1"), Respond(500))
    assert api.pending_misbehaviours == 2
    statuses = [(await post(http, body())).status_code for _ in range(3)]
    assert statuses == [429, 500, 201]
    assert api.pending_misbehaviours == 0


# ---------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------


def test_url_before_start() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = ApiDouble(keys={KEY}).url


def test_running_in_a_thread() -> None:
    with ApiDouble(keys={KEY}).running_in_thread() as double, httpx.Client(base_url=double.url) as http:
        response = http.post(
            DEFAULT_PATH,
            json=body(),
            headers={"X-API-Key": KEY},
        )
        assert response.status_code == 201
    assert len(double.accounts) == 1


def test_command_line(tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# keys the double accepts\n{KEY}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.api_double", "--port", "0", "--keys-file", str(keys), "--print-url"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url) as http:
            response = http.post(DEFAULT_PATH, json=body(), headers={"X-API-Key": KEY})
        assert response.status_code == 201
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "listening on" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_command_line_needs_a_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab.api_double", "--key", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "at least one key" in result.stderr
