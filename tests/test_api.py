"""The platform client against the API double on loopback: every outcome, every retry rule, no leaks.

The rule under test everywhere: inboxcheck never creates an inbox twice. Each retry path asserts the
number of creates the double received and the Idempotency-Key each carried.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from inboxcheck._errors import (
    ApiError,
    ApiKeyError,
    InboxcheckError,
    InsecureKeyFileWarning,
    OptionsError,
)
from inboxcheck._models import Account, Severity
from inboxcheck._secrets import Scrubber
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.key import API_KEY_ENV, BULK_MAX_ITEMS, ApiKey, load_api_key
from inboxcheck.platform.outcomes import (
    ApiExit,
    ApiOutcome,
    CreatedInbox,
    CreateFailed,
    CreateOutcome,
    InboxStatus,
)
from inboxcheck.platform.replies import RETRY_AFTER_CAP, parse_error_body, parse_retry_after
from lab.api_double import (
    ApiDouble,
    Drip,
    DropAfterBody,
    RateLimit,
    ResetBeforeRead,
    Respond,
    ServerError,
    Slow,
    Stall,
)

# Canaries: if any of these shows up in any output, a secret leaked.
KEY = "cs_test_CANARYkeyZ9x8w7v6u5t4s3QWER"
OTHER_KEY = "cs_live_someoneelseskey0123456789AB"
SMTP_PASSWORD = "Canary-Smtp-Pa55word!"
IMAP_PASSWORD = 'Canary"Imap\\Pa55\u00e9'
SECRETS = (KEY, SMTP_PASSWORD, IMAP_PASSWORD, json.dumps(IMAP_PASSWORD)[1:-1])
FIXED_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def make_account(email: str = "john@company.com", **changes: Any) -> Account:
    data: dict[str, Any] = {
        "email_address": email,
        "display_name": "John Smith",
        "inbox_type": "GOOGLE_WORKSPACE",
        "daily_limit": 30,
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "smtp_username": email,
        "smtp_password": SMTP_PASSWORD,
        "smtp_use_tls": True,
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "imap_username": email,
        "imap_password": IMAP_PASSWORD,
        "imap_use_ssl": True,
    }
    data.update(changes)
    return Account.model_validate(data)


def payload(email: str = "john@company.com", **changes: Any) -> dict[str, Any]:
    body = make_account(email).api_payload()
    body.update(changes)
    return body


class Sleeps:
    """An injected ``sleep`` that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def api() -> AsyncIterator[ApiDouble]:
    async with ApiDouble(keys={KEY, OTHER_KEY}) as double:
        yield double


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client_for(double: ApiDouble, sleeps: Sleeps, *, key: str = KEY, **options: Any) -> PlatformClient:
    options.setdefault("timeout", 5)
    return PlatformClient(
        ApiKey.parse(key), base_url=double.url, sleep=sleeps, clock=lambda: FIXED_NOW, **options
    )


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def outcome_text(outcome: CreateOutcome) -> str:
    return outcome.model_dump_json() + repr(outcome) + str(outcome)


# ---------------------------------------------------------------------------------------------------
# ApiKey
# ---------------------------------------------------------------------------------------------------


class TestApiKey:
    def test_parses_live_and_test_keys(self) -> None:
        assert ApiKey.parse(KEY).kind == "test"
        assert ApiKey.parse(KEY).is_test
        assert ApiKey.parse(OTHER_KEY).kind == "live"
        assert ApiKey.parse(KEY).reveal() == KEY

    def test_repr_and_str_never_show_the_key(self) -> None:
        key = ApiKey.parse(KEY)
        for text in (repr(key), str(key), f"{key}", f"{key!r}", key.masked()):
            assert KEY not in text
            assert "CANARY" not in text
        assert key.masked() == "cs_test_…QWER"
        assert repr(key) == "ApiKey('cs_test_…QWER')"

    def test_a_short_token_is_masked_entirely(self) -> None:
        """The last four show only when at least 16 characters stay hidden."""
        key = ApiKey.parse("cs_live_" + "a" * 15 + "WXYZ")
        assert key.masked() == "cs_live_…"
        assert "WXYZ" not in repr(key)
        assert ApiKey.parse("cs_live_" + "a" * 16 + "WXYZ").masked() == "cs_live_…WXYZ"

    def test_cannot_be_pickled(self) -> None:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(ApiKey.parse(KEY))

    def test_equality_compares_the_secret(self) -> None:
        assert ApiKey.parse(KEY) == ApiKey.parse(KEY)
        assert ApiKey.parse(KEY) != ApiKey.parse(OTHER_KEY)
        assert len({ApiKey.parse(KEY), ApiKey.parse(KEY)}) == 1

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", "is empty"),
            (" " + KEY, "whitespace"),
            (KEY + " ", "whitespace"),
            (KEY[:12] + "\t" + KEY[12:], "whitespace"),
            (KEY + "\n", "line break"),
            (KEY + "\r\n", "line break"),
            (KEY + "\nsecond-line", "line break"),
            ("CS_TEST_" + KEY[8:], "must be lower case"),
            ("cs_prod_" + KEY[8:], "only live and test keys"),
            ("sk_live_" + KEY[8:], "does not start with cs_live_ or cs_test_"),
            (KEY[8:], "does not start with cs_live_ or cs_test_"),
            ("cs_live_xxx", "too short"),
            ("cs_test_CANARY123456789", "too short"),
            ("cs_test_" + "CANARY" * 50, "too long"),
            ("cs_test_CANARY.key/with+chars=", "not a letter, digit"),
            ("cs_test_CANARYkeyZ9x8w7v6u5t4s3QWE\u00e9", "not a letter, digit"),
        ],
    )
    def test_rejects_malformed_keys_without_echoing_them(self, text: str, expected: str) -> None:
        with pytest.raises(ApiKeyError, match=expected) as caught:
            ApiKey.parse(text)
        message = str(caught.value)
        assert "CANARY" not in message
        if text.strip():
            assert text.strip() not in message
        assert isinstance(caught.value, InboxcheckError)

    def test_from_env(self) -> None:
        assert ApiKey.from_env({API_KEY_ENV: KEY}).reveal() == KEY

    @pytest.mark.parametrize(("env", "expected"), [({}, "not set"), ({API_KEY_ENV: ""}, "empty")])
    def test_from_env_missing(self, env: dict[str, str], expected: str) -> None:
        with pytest.raises(ApiKeyError, match=f"COLDSEND_API_KEY is {expected}") as caught:
            ApiKey.from_env(env)
        assert "--api-key-file" in str(caught.value)

    def test_from_env_malformed_names_the_variable(self) -> None:
        with pytest.raises(ApiKeyError, match=r"\$COLDSEND_API_KEY contains whitespace") as caught:
            ApiKey.from_env({API_KEY_ENV: KEY + " "})
        assert KEY not in str(caught.value)

    def _key_file(self, tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
        path = tmp_path / "key"
        path.write_bytes(content)
        path.chmod(mode)
        return path

    @pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
    def test_from_file_strips_one_trailing_newline(self, tmp_path: Path, ending: bytes) -> None:
        path = self._key_file(tmp_path, KEY.encode() + ending)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ApiKey.from_file(path).reveal() == KEY

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (KEY.encode() + b"\n\n", "line break"),
            (b"\n" + KEY.encode(), "line break"),
            (KEY.encode() + b" \n", "whitespace"),
            (b"", "is empty"),
            (b"\n", "is empty"),
            (b"cs_test_\xff\xfeCANARY", "not ASCII"),
        ],
    )
    def test_from_file_rejects(self, tmp_path: Path, content: bytes, expected: str) -> None:
        path = self._key_file(tmp_path, content)
        with pytest.raises(ApiKeyError, match=expected) as caught:
            ApiKey.from_file(path)
        assert str(path) in str(caught.value)
        assert "CANARY" not in str(caught.value)

    def test_from_file_missing_and_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ApiKeyError, match="does not exist"):
            ApiKey.from_file(tmp_path / "nope")
        with pytest.raises(ApiKeyError, match="is a directory"):
            ApiKey.from_file(tmp_path)

    @pytest.mark.parametrize(("mode", "who"), [(0o644, "everyone"), (0o640, "its group")])
    def test_from_file_warns_when_others_can_read_it(self, tmp_path: Path, mode: int, who: str) -> None:
        path = self._key_file(tmp_path, KEY.encode() + b"\n", mode)
        with pytest.warns(InsecureKeyFileWarning, match=f"can be read by {who}") as record:
            key = ApiKey.from_file(path)
        assert key.reveal() == KEY
        assert f"chmod 600 {path}" in str(record[0].message)
        assert KEY not in str(record[0].message)

    def test_from_file_reads_a_pipe_without_a_permission_warning(self, tmp_path: Path) -> None:
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, KEY.encode() + b"\n")
            os.close(write_end)
            write_end = -1
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                key = ApiKey.from_file(f"/dev/fd/{read_end}")
        finally:
            os.close(read_end)
            if write_end != -1:
                os.close(write_end)
        assert key.reveal() == KEY

    def test_load_api_key_prefers_the_file(self, tmp_path: Path) -> None:
        path = self._key_file(tmp_path, OTHER_KEY.encode())
        assert load_api_key(key_file=path, environ={API_KEY_ENV: KEY}).reveal() == OTHER_KEY
        assert load_api_key(environ={API_KEY_ENV: KEY}).reveal() == KEY


# ---------------------------------------------------------------------------------------------------
# Pure parts: scrubbing, error bodies, Retry-After
# ---------------------------------------------------------------------------------------------------


class TestScrubber:
    def test_removes_plain_json_escaped_and_percent_encoded_forms(self) -> None:
        scrub = Scrubber([KEY, IMAP_PASSWORD, SMTP_PASSWORD])
        echoed = json.dumps({"imap_password": IMAP_PASSWORD, "x": f"key={KEY}"})
        from urllib.parse import quote, quote_plus

        for text in (
            f"got {IMAP_PASSWORD} and {KEY}",
            echoed,
            json.dumps(echoed),
            f"pw={quote(SMTP_PASSWORD, safe='')}",
            f"pw={quote_plus(IMAP_PASSWORD, safe='')}",
            json.dumps(IMAP_PASSWORD, ensure_ascii=False),
        ):
            cleaned = scrub.text(text)
            assert "[redacted]" in cleaned
            assert_no_secrets(cleaned)
            assert quote(SMTP_PASSWORD, safe="") not in cleaned

    def test_short_secrets_are_removed_only_where_they_stand_alone(self) -> None:
        scrub = Scrubber(["ab1"])
        assert scrub.text("password ab1 is too short") == "password [redacted] is too short"
        assert scrub.text('"ab1"') == '"[redacted]"'
        assert scrub.text("tab12 stays") == "tab12 stays"

    def test_json_drops_values_under_secret_names(self) -> None:
        scrub = Scrubber([])
        cleaned = scrub.json({"smtp_password": "x", "nested": [{"api_key": 1, "apiKey": "y"}], "ok": True})
        assert cleaned == {
            "smtp_password": "[redacted]",
            "nested": [{"api_key": "[redacted]", "apiKey": "[redacted]"}],
            "ok": True,
        }

    def test_no_secrets_is_a_no_op(self) -> None:
        assert Scrubber(["", ""]).text("unchanged") == "unchanged"


@pytest.mark.parametrize(
    ("body", "fields", "message"),
    [
        (
            {"detail": [{"loc": ["body", "smtp_port"], "msg": "too big", "input": SMTP_PASSWORD}]},
            ["smtp_port"],
            "too big",
        ),
        ({"detail": [{"loc": ["body", "accounts", 3, "imap_host"], "msg": "m"}]}, ["imap_host"], "m"),
        ({"errors": {"smtp_host": ["is invalid", "other"]}}, ["smtp_host"], "is invalid"),
        ({"errors": {"display_name": "too long"}}, ["display_name"], "too long"),
        ({"errors": [{"field": "daily_limit", "message": "too high"}]}, ["daily_limit"], "too high"),
        ({"error": {"field": "inbox_type", "message": "unknown"}}, ["inbox_type"], "unknown"),
        ({"error": {"message": "bad", "code": "x"}}, [], "bad"),
        ({"error": "invalid_request", "message": "nope"}, [], "nope"),
        ({"field": "imap_port", "message": "out of range"}, ["imap_port"], "out of range"),
        ({"detail": "Invalid body"}, [], "Invalid body"),
        ({"message": "Validation failed"}, [], "Validation failed"),
        ({"field": "drop table;--", "message": "m"}, [], "m"),
        ({"unrelated": 1}, [], None),
        ([1, 2], [], None),
        ("plain text", [], "plain text"),
    ],
)
def test_parse_error_body(body: Any, fields: list[str], message: str | None) -> None:
    problems = parse_error_body(body)
    assert [p.field for p in problems if p.field] == fields
    if message is None:
        assert all(p.message is None for p in problems)
    else:
        assert problems[0].message == message
    assert all(SMTP_PASSWORD not in (p.message or "") for p in problems)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        (format_datetime(FIXED_NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("Thu, 26 Nov 2026 12:00:45 GMT", 45.0),
        ("Thursday, 26-Nov-26 12:00:10 GMT", 10.0),
        (format_datetime(FIXED_NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("\xb2", None),  # a digit to str.isdigit, not to HTTP
        ("\u0663", None),
        ("9" * 400, RETRY_AFTER_CAP),  # too large for a float
        ("9" * 5000, RETRY_AFTER_CAP),  # too long for int()
        ("0" * 400 + "5", 5.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CAP),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=FIXED_NOW) == seconds


def test_outcomes_have_distinct_codes_and_exit_codes_above_the_check_codes() -> None:
    exits = [outcome.exit_code for outcome in ApiOutcome]
    assert len(set(exits)) == len(exits)
    assert ApiOutcome.CREATED.exit_code == 0
    assert all(code >= 4 for code in exits if code)
    assert {o.name for o in ApiOutcome} == {e.name for e in ApiExit}
    assert ApiOutcome.KEY_REJECTED.code == "api.key_rejected"
    assert ApiOutcome.OUTCOME_UNKNOWN.may_exist
    assert not ApiOutcome.REJECTED.may_exist
    assert not ApiOutcome.UNREACHABLE.may_exist


# ---------------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------------


class TestConstruction:
    def test_plain_http_is_refused_except_on_loopback(self) -> None:
        key = ApiKey.parse(KEY)
        with pytest.raises(OptionsError, match="plain http"):
            PlatformClient(key, base_url="http://api.coldsend.io")
        for url in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://localhost:1"):
            PlatformClient(key, base_url=url)
        PlatformClient(key, base_url="http://api.example", allow_insecure_http=True)

    @pytest.mark.parametrize("url", ["ftp://api.coldsend.io", "api.coldsend.io", "https://"])
    def test_unusable_urls(self, url: str) -> None:
        with pytest.raises(OptionsError, match="API URL"):
            PlatformClient(ApiKey.parse(KEY), base_url=url)

    def test_path_and_base_are_joined(self) -> None:
        client = PlatformClient(
            ApiKey.parse(KEY), base_url="https://api.coldsend.pro/prefix/", path="/x/smtp"
        )
        assert str(client.url) == "https://api.coldsend.pro/prefix/x/smtp"

    def test_the_key_must_be_an_api_key(self) -> None:
        with pytest.raises(TypeError, match="ApiKey"):
            PlatformClient(KEY)  # type: ignore[arg-type]

    def test_repr_masks_the_key(self) -> None:
        assert KEY not in repr(PlatformClient(ApiKey.parse(KEY)))

    @pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "ünï"])
    async def test_idempotency_key_is_checked(self, bad: str) -> None:
        async with PlatformClient(ApiKey.parse(KEY)) as client:
            with pytest.raises(OptionsError, match="idempotency key"):
                await client.create_sender_account(payload(), idempotency_key=bad or " ")


# ---------------------------------------------------------------------------------------------------
# Against the double
# ---------------------------------------------------------------------------------------------------


async def test_created(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert outcome.outcome is ApiOutcome.CREATED
    assert outcome.exit_code == 0
    inbox = outcome.inbox
    assert inbox is not None
    assert inbox.email_address == "john@company.com"
    assert inbox.display_name == "John Smith"
    assert inbox.inbox_type == "GOOGLE_WORKSPACE"
    assert inbox.daily_limit == 30
    assert inbox.status is InboxStatus.PENDING
    assert inbox.created_at.tzinfo is not None
    assert inbox.id == api.accounts["john@company.com"]["id"]
    assert outcome.raise_for_outcome() == inbox
    assert outcome.finding.code == "api.created"
    assert outcome.finding.severity is Severity.INFO
    assert outcome.finding.evidence["inbox_id"] == inbox.id
    assert outcome.request_id is not None and outcome.request_id.startswith("req_")
    (create,) = api.creates()
    assert create.headers["x-api-key"] == "cs_test_…QWER"
    assert create.headers["content-type"] == "application/json"
    assert create.idempotency_key == outcome.idempotency_key
    assert uuid.UUID(outcome.idempotency_key).version == 4
    assert create.body["smtp_password"] == "********"
    assert sleeps.waits == []


async def test_the_account_payload_is_what_the_double_accepts(api: ApiDouble, sleeps: Sleeps) -> None:
    """Account.api_payload and the contract agree: no daily limit means the platform's default."""
    body = make_account(daily_limit=None).api_payload()
    assert "daily_limit" not in body
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(body, idempotency_key="run-1")
    assert outcome.inbox is not None
    assert outcome.inbox.daily_limit == 100
    assert api.creates()[0].idempotency_key == "run-1"


async def test_active_status_and_extra_fields(sleeps: Sleeps) -> None:
    async with (
        ApiDouble(keys={KEY}, initial_status="ACTIVE") as double,
        client_for(double, sleeps) as client,
    ):
        outcome = await client.create_sender_account(payload())
    assert outcome.inbox is not None
    assert outcome.inbox.status is InboxStatus.ACTIVE
    assert not hasattr(outcome.inbox, "workspace_id")


async def test_key_unknown_is_key_rejected(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps, key="cs_test_notaknownkey0000000000") as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.KEY_REJECTED
    assert outcome.exit_code == 4
    assert outcome.status_code == 403
    assert outcome.finding.evidence["status_code"] == 403
    assert outcome.finding.evidence["key_used"] == "cs_test_…0000"
    assert "not allowed" in outcome.finding.message
    assert outcome.finding.fix is not None and "COLDSEND_API_KEY" in outcome.finding.fix
    assert api.accounts == {}
    assert len(api.creates()) == 1


async def test_401_is_key_rejected(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(Respond(401, {"detail": "Invalid API key."}, {"X-Request-Id": "req-abc"}))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.KEY_REJECTED
    assert outcome.status_code == 401
    assert outcome.request_id == "req-abc"
    assert outcome.finding.evidence["server_message"] == "Invalid API key."
    assert "Invalid API key." in outcome.finding.message
    assert len(api.creates()) == 1


async def test_rejected_field_is_named(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload(smtp_port=70000))
    assert outcome.outcome is ApiOutcome.REJECTED
    assert outcome.exit_code == 5
    assert outcome.status_code == 422
    assert outcome.finding.evidence["fields"] == ["smtp_port"]
    assert "smtp_port" in outcome.finding.message
    assert outcome.finding.fix == "Correct smtp_port in the account file and run again."
    assert api.accounts == {}
    assert sleeps.waits == []


async def test_rejected_names_every_field_and_never_echoes_a_password(api: ApiDouble, sleeps: Sleeps) -> None:
    body = payload(daily_limit=5000, smtp_password=SMTP_PASSWORD * 30, extra="x")
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(body)
    assert outcome.outcome is ApiOutcome.REJECTED
    assert outcome.finding.evidence["fields"] == ["extra", "smtp_password", "daily_limit"]
    assert_no_secrets(outcome_text(outcome))


@pytest.mark.parametrize(
    ("status", "body", "fields"),
    [
        (400, {"errors": {"smtp_host": ["is not reachable"]}}, ["smtp_host"]),
        (422, {"error": {"field": "display_name", "message": "ALL CAPS"}}, ["display_name"]),
        (400, {"field": "imap_port", "message": "must be 993"}, ["imap_port"]),
        (400, {"detail": "Bad request"}, []),
    ],
)
async def test_rejected_shapes(
    api: ApiDouble, sleeps: Sleeps, status: int, body: Any, fields: list[str]
) -> None:
    api.misbehave(Respond(status, body))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.REJECTED
    assert outcome.finding.evidence.get("fields", []) == fields
    for field in fields:
        assert field in outcome.finding.message


async def test_rejected_plain_text_body(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(Respond(400, text="smtp_port is wrong"))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.REJECTED
    assert outcome.finding.evidence["server_message"] == "smtp_port is wrong"


async def test_duplicate(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps) as client:
        first = await client.create_sender_account(payload())
        second = await client.create_sender_account(payload("JOHN@company.com"))
    assert first.ok
    assert second.outcome is ApiOutcome.DUPLICATE
    assert second.exit_code == 6
    assert second.status_code == 409
    assert "already" in second.finding.message
    assert len(api.accounts) == 1
    assert len(api.creates()) == 2
    assert first.idempotency_key != second.idempotency_key


async def test_a_rerun_with_the_same_idempotency_key_is_answered_not_repeated(
    api: ApiDouble, sleeps: Sleeps
) -> None:
    async with client_for(api, sleeps) as client:
        first = await client.create_sender_account(payload(), idempotency_key="fixed-key")
        again = await client.create_sender_account(payload(), idempotency_key="fixed-key")
    assert first.inbox is not None and again.inbox is not None
    assert again.ok
    assert again.inbox.id == first.inbox.id
    assert len(api.accounts) == 1
    assert [r.outcome for r in api.creates()] == ["created", "replayed"]


async def test_rate_limited_then_created_with_the_same_idempotency_key(
    api: ApiDouble, sleeps: Sleeps
) -> None:
    api.misbehave(RateLimit("7"))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert outcome.attempts == 2
    assert sleeps.waits == [7.0]
    creates = api.creates()
    assert [r.status for r in creates] == [429, 201]
    assert {r.idempotency_key for r in creates} == {outcome.idempotency_key}
    assert outcome.finding.evidence["retried_after"] == ["429"]
    assert outcome.finding.evidence["waited_seconds"] == 7.0
    assert len(api.accounts) == 1


async def test_rate_limited_with_an_http_date(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(RateLimit(format_datetime(FIXED_NOW + timedelta(seconds=42), usegmt=True)))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert sleeps.waits == [42.0]


async def test_rate_limited_without_retry_after_backs_off(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(RateLimit(None), RateLimit(None), RateLimit("soon"))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert len({r.idempotency_key for r in api.creates()}) == 1


async def test_still_rate_limited_after_the_retries(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(*[RateLimit("2")] * 4)
    async with client_for(api, sleeps, max_retries=3) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.RATE_LIMITED
    assert outcome.exit_code == 7
    assert outcome.attempts == 4
    assert sleeps.waits == [2.0, 2.0, 2.0]
    assert len(api.creates()) == 4
    assert len({r.idempotency_key for r in api.creates()}) == 1
    assert api.accounts == {}
    assert outcome.finding.fix == (
        "Run again in 2 seconds; the platform refused the request before acting on it."
    )


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(RateLimit("3600"))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.RATE_LIMITED
    assert sleeps.waits == []
    assert outcome.attempts == 1
    assert outcome.finding.evidence["retry_after_seconds"] == 3600
    assert outcome.finding.fix is not None and "3600 seconds" in outcome.finding.fix


@pytest.mark.parametrize("digits", [400, 5000])
async def test_an_absurd_retry_after_is_rate_limited_at_once(
    api: ApiDouble, sleeps: Sleeps, digits: int
) -> None:
    api.misbehave(RateLimit("9" * digits))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.RATE_LIMITED and outcome.exit_code == 7
    assert sleeps.waits == [] and outcome.attempts == 1
    assert outcome.finding.fix is not None and "a day or more" in outcome.finding.fix


async def test_an_unreadable_retry_after_is_treated_as_absent(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(RateLimit("\xb2"))  # sent as the byte 0xB2
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert sleeps.waits == [1.0]  # the backoff, as with no header


async def test_a_wait_for_retry_after_is_announced(api: ApiDouble, sleeps: Sleeps) -> None:
    said: list[str] = []
    api.misbehave(RateLimit("7"))
    async with client_for(api, sleeps, on_wait=said.append) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert said == [
        "the platform answered HTTP 429; waiting 7 s before trying again (attempt 2, same Idempotency-Key)"
    ]


async def test_a_dripping_answer_ends_at_the_deadline_as_unknown(api: ApiDouble, sleeps: Sleeps) -> None:
    # One byte per 0.3 s never trips the 5 s per-read timeout; only the call's deadline ends it.
    api.misbehave(Drip(interval=0.3))
    started = time.monotonic()
    async with client_for(api, sleeps, deadline=1.5) as client:
        outcome = await client.create_sender_account(payload())
    assert time.monotonic() - started < 30
    assert outcome.outcome is ApiOutcome.OUTCOME_UNKNOWN and outcome.exit_code == 8
    assert outcome.finding.evidence["error"] == "deadline"
    assert "1.5 s deadline" in outcome.finding.message
    assert outcome.idempotency_key in (outcome.finding.fix or "")
    assert [r.outcome for r in api.creates()] == ["created"]  # it was created: hence "unknown"
    assert outcome.attempts == 1


async def test_a_retry_after_longer_than_the_deadline_is_not_waited_for(
    api: ApiDouble, sleeps: Sleeps
) -> None:
    api.misbehave(RateLimit("20"))
    async with client_for(api, sleeps, deadline=10) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.RATE_LIMITED
    assert sleeps.waits == []


async def test_the_total_wait_is_bounded(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(*[RateLimit("30")] * 4)
    async with client_for(api, sleeps, max_total_wait=45) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.RATE_LIMITED
    assert sleeps.waits == [30.0]
    assert outcome.attempts == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_not_retried(api: ApiDouble, sleeps: Sleeps, status: int) -> None:
    api.misbehave(ServerError(status, retry_after="1"))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.SERVER_ERROR
    assert outcome.exit_code == 9
    assert outcome.status_code == status
    assert outcome.attempts == 1
    assert sleeps.waits == []
    assert len(api.creates()) == 1
    assert f"same idempotency key ({outcome.idempotency_key})" in (outcome.finding.fix or "")
    assert outcome.finding.evidence["server_message"] == "Internal error; try again later."


async def test_a_late_server_error_leaves_one_inbox(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(ServerError(500, after_create=True))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.SERVER_ERROR
    assert "may have stored it" in outcome.finding.message
    assert len(api.creates()) == 1
    assert len(api.accounts) == 1


async def test_503_is_retried_with_the_same_key_when_asked(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(ServerError(503, retry_after="3"))
    async with client_for(api, sleeps, retry_unavailable=True) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert sleeps.waits == [3.0]
    assert [r.status for r in api.creates()] == [503, 201]
    assert len({r.idempotency_key for r in api.creates()}) == 1


async def test_a_retried_503_that_had_created_the_inbox_is_replayed(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(ServerError(503, after_create=True))
    async with client_for(api, sleeps, retry_unavailable=True) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert [r.outcome for r in api.creates()] == ["server_error_after_created", "replayed"]
    assert len(api.accounts) == 1


async def test_a_409_after_a_retried_503_says_this_run_may_have_created_it(
    sleeps: Sleeps,
) -> None:
    async with ApiDouble(keys={KEY}, honour_idempotency=False) as double:
        double.misbehave(ServerError(503, after_create=True))
        async with client_for(double, sleeps, retry_unavailable=True) as client:
            outcome = await client.create_sender_account(payload())
        assert outcome.outcome is ApiOutcome.DUPLICATE
        assert "earlier attempt of this same run" in outcome.finding.message
        assert outcome.finding.evidence["retried_after"] == ["503"]
        assert len(double.accounts) == 1


class FailingConnects(httpx.AsyncBaseTransport):
    """A real transport whose first ``failures`` connections fail before anything is sent."""

    def __init__(self, failures: int, error: type[httpx.TransportError] = httpx.ConnectError):
        self.failures = failures
        self.error = error
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.failures -= 1
            raise self.error("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_connect_failures_are_retried(
    api: ApiDouble, sleeps: Sleeps, error: type[httpx.TransportError]
) -> None:
    transport = FailingConnects(2, error)
    async with client_for(api, sleeps, transport=transport) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok
    assert outcome.attempts == 3
    assert sleeps.waits == [0.5, 1.0]
    assert len(api.creates()) == 1
    assert outcome.finding.evidence["retried_after"] == [error.__name__] * 2


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_connection_refused_is_retried_then_unreachable(refused_port: int, sleeps: Sleeps) -> None:
    client = PlatformClient(ApiKey.parse(KEY), base_url=f"http://127.0.0.1:{refused_port}", sleep=sleeps)
    async with client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.UNREACHABLE
    assert outcome.exit_code == 10
    assert outcome.attempts == 4
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert outcome.finding.evidence["error"] == "ConnectError"
    assert "was not created" in outcome.finding.message
    assert not outcome.outcome.may_exist


async def test_connect_retries_stop_at_max_retries(refused_port: int, sleeps: Sleeps) -> None:
    client = PlatformClient(
        ApiKey.parse(KEY),
        base_url=f"http://127.0.0.1:{refused_port}",
        sleep=sleeps,
        max_retries=0,
    )
    async with client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.UNREACHABLE
    assert outcome.attempts == 1
    assert sleeps.waits == []


async def test_dropped_after_the_body_is_outcome_unknown_and_not_retried(
    api: ApiDouble, sleeps: Sleeps
) -> None:
    api.misbehave(DropAfterBody())
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert outcome.exit_code == 8
    assert outcome.attempts == 1
    assert sleeps.waits == []
    assert [r.outcome for r in api.creates()] == ["dropped_after_created"]
    assert len(api.accounts) == 1  # it did exist: retrying would have been wrong
    assert outcome.finding.fix is not None
    assert outcome.finding.fix.startswith("Look in the platform's sender-account list")
    assert "john@company.com" in outcome.finding.fix


async def test_a_rerun_after_an_unknown_outcome_with_the_same_key_is_safe(
    api: ApiDouble, sleeps: Sleeps
) -> None:
    api.misbehave(DropAfterBody())
    async with client_for(api, sleeps) as client:
        lost = await client.create_sender_account(payload())
        again = await client.create_sender_account(payload(), idempotency_key=lost.idempotency_key)
    assert lost.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert again.ok
    assert len(api.accounts) == 1


async def test_reset_before_reading_is_outcome_unknown(api: ApiDouble, sleeps: Sleeps) -> None:
    """The client cannot tell a reset before reading from one after: it must not retry either."""
    api.misbehave(ResetBeforeRead())
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert outcome.attempts == 1
    assert sleeps.waits == []
    assert [r.outcome for r in api.log] == ["reset_before_read"]
    assert api.connections == 1


async def test_no_answer_within_the_timeout_is_outcome_unknown(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(Stall())
    async with client_for(api, sleeps, timeout=httpx.Timeout(5, read=0.2)) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert outcome.finding.evidence["error"] == "ReadTimeout"
    assert "read timeout" in outcome.finding.message
    assert outcome.attempts == 1
    assert [r.outcome for r in api.creates()] == ["stalled_after_created"]


async def test_a_slow_answer_within_the_timeout_is_fine(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(Slow(0.05))
    async with client_for(api, sleeps, timeout=10) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.ok


@pytest.mark.parametrize(
    ("response", "inbox_id"),
    [
        (Respond(201, text="<html>Created!</html>"), None),
        (Respond(201, {"id": "in_123", "email_address": "john@company.com"}), "in_123"),
        (Respond(201, {"id": 77, "email_address": "x", "status": "WARMING"}), "77"),
        (Respond(201, []), None),
    ],
)
async def test_an_unreadable_success_is_bad_response(
    api: ApiDouble, sleeps: Sleeps, response: Respond, inbox_id: str | None
) -> None:
    api.misbehave(response)
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.BAD_RESPONSE
    assert outcome.exit_code == 12
    assert "may well exist" in outcome.finding.message
    assert outcome.finding.evidence.get("inbox_id") == inbox_id
    assert outcome.attempts == 1


async def test_200_is_created(api: ApiDouble, sleeps: Sleeps) -> None:
    body = {
        "id": 5,
        "email_address": "john@company.com",
        "display_name": "John",
        "inbox_type": "CUSTOM_SMTP",
        "daily_limit": 20,
        "status": "PAUSED",
        "created_at": "2026-11-26T12:00:00Z",
        "new_field": {"nested": True},
    }
    api.misbehave(Respond(200, body))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.inbox == CreatedInbox(
        id="5",
        email_address="john@company.com",
        display_name="John",
        inbox_type="CUSTOM_SMTP",
        daily_limit=20,
        status=InboxStatus.PAUSED,
        created_at=datetime(2026, 11, 26, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize("status", [302, 307, 404, 405, 418])
async def test_undocumented_statuses(api: ApiDouble, sleeps: Sleeps, status: int) -> None:
    api.misbehave(Respond(status, {"detail": "nope"}, {"Location": "https://elsewhere.example/"}))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.UNEXPECTED_STATUS
    assert outcome.exit_code == 11
    assert f"HTTP {status}" in outcome.finding.message
    assert outcome.finding.evidence["location"] == "https://elsewhere.example/"
    assert len(api.log) == 1  # a redirect is never followed


async def test_raise_for_outcome(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(ServerError(500))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    with pytest.raises(CreateFailed) as caught:
        outcome.raise_for_outcome()
    assert isinstance(caught.value, ApiError)
    assert caught.value.exit_code == 9
    assert caught.value.outcome is outcome
    assert "HTTP 500" in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# Bulk
# ---------------------------------------------------------------------------------------------------


async def test_bulk(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps) as client:
        await client.create_sender_account(payload("taken@company.com"))
        api.misbehave(RateLimit("1"))
        outcome = await client.create_sender_accounts_bulk(
            [payload("a@company.com"), payload("b@company.com", smtp_port=0), payload("taken@company.com")]
        )
    assert outcome.outcome is ApiOutcome.CREATED
    assert outcome.exit_code == 0
    assert outcome.job_id is not None and outcome.job_id.startswith("job_")
    assert [(i.index, i.created, i.field) for i in outcome.items] == [
        (0, True, None),
        (1, False, "smtp_port"),
        (2, False, "email_address"),
    ]
    assert outcome.items[0].inbox_id == api.accounts["a@company.com"]["id"]
    assert outcome.finding.severity is Severity.WARN
    assert sleeps.waits == [1.0]
    bulk = [r for r in api.log if r.path.endswith("/bulk")]
    assert len(bulk) == 2
    assert len({r.idempotency_key for r in bulk}) == 1
    assert bulk[0].body["accounts"][0]["smtp_password"] == "********"


async def test_bulk_limits(api: ApiDouble, sleeps: Sleeps) -> None:
    async with client_for(api, sleeps) as client:
        with pytest.raises(OptionsError, match="at least one"):
            await client.create_sender_accounts_bulk([])
        with pytest.raises(OptionsError, match="at most 100"):
            await client.create_sender_accounts_bulk([payload()] * (BULK_MAX_ITEMS + 1))
    assert api.log == []


async def test_bulk_errors_use_the_same_outcomes(api: ApiDouble, sleeps: Sleeps) -> None:
    api.misbehave(DropAfterBody(process=False), Respond(202, {"unexpected": True}))
    async with client_for(api, sleeps) as client:
        dropped = await client.create_sender_accounts_bulk([payload()])
        unreadable = await client.create_sender_accounts_bulk([payload()])
    assert dropped.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert unreadable.outcome is ApiOutcome.BAD_RESPONSE
    assert "the batch may well exist" in unreadable.finding.message


# ---------------------------------------------------------------------------------------------------
# Secrets never leak
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header_echo", [False, True])
async def test_no_secret_in_any_outcome_exception_or_log_line(
    api: ApiDouble,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
    refused_port: int,
    header_echo: bool,
) -> None:
    """A careless server echoes the whole request everywhere; nothing of it may come out.

    Echoes in bodies never reach a log line. An echo in a response *header* is logged verbatim by
    httpcore at DEBUG, which only the handler filter (:meth:`Scrubber.logging_filter`) catches.
    """
    caplog.set_level(logging.DEBUG)
    if header_echo:
        scrubber = Scrubber.for_request(ApiKey.parse(KEY), payload())
        caplog.handler.addFilter(scrubber.logging_filter())
    echo = Respond(
        422,
        echo_request=True,
        headers={"X-Request-Id": f"id-{SMTP_PASSWORD}"} if header_echo else {},
    )
    api.misbehave(
        echo,
        Respond(400, echo_request=True),
        Respond(401, echo_request=True),
        Respond(409, echo_request=True),
        Respond(500, echo_request=True),
        Respond(201, echo_request=True),
        Respond(
            302,
            echo_request=True,
            headers={"Location": f"https://x.example/?k={KEY}"} if header_echo else {},
        ),
        Respond(429, echo_request=True, headers={"Retry-After": "9999"}),
        Respond(400, text=f"password {IMAP_PASSWORD} rejected"),
        Respond(400, {"errors": {"smtp_password": [f"'{SMTP_PASSWORD}' is weak"]}}),
        DropAfterBody(),
        Stall(),
    )
    texts: list[str] = []
    async with client_for(api, sleeps, timeout=httpx.Timeout(5, read=0.2)) as client:
        texts.append(repr(client))
        while api.pending_misbehaviours:
            outcome = await client.create_sender_account(payload())
            assert not outcome.ok
            texts.append(outcome_text(outcome))
            with pytest.raises(CreateFailed) as caught:
                outcome.raise_for_outcome()
            texts.append(str(caught.value) + repr(caught.value))
        bulk = await client.create_sender_accounts_bulk([payload("q@company.com")])
        texts.append(bulk.model_dump_json() + repr(bulk))
    unreachable = PlatformClient(ApiKey.parse(KEY), base_url=f"http://127.0.0.1:{refused_port}", sleep=sleeps)
    async with unreachable:
        texts.append(outcome_text(await unreachable.create_sender_account(payload())))
    texts.append(repr(api.log))
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(caplog.text)
    assert any(r.name == "httpx" for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert any("[redacted]" in text for text in texts)
    assert_no_secrets(*texts)


async def test_rejections_never_carry_the_input_the_server_echoed(api: ApiDouble, sleeps: Sleeps) -> None:
    detail = [{"loc": ["body", "smtp_password"], "msg": "weak", "input": SMTP_PASSWORD}]
    api.misbehave(Respond(422, {"detail": detail}))
    async with client_for(api, sleeps) as client:
        outcome = await client.create_sender_account(payload())
    assert outcome.finding.evidence["fields"] == ["smtp_password"]
    assert_no_secrets(outcome_text(outcome))


async def test_an_undecodable_answer_is_outcome_unknown() -> None:
    """httpx raises DecodingError (not a TransportError) for a broken gzip body: still an outcome."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Content-Encoding": "gzip"}, content=b"not gzip at all")

    client = PlatformClient(ApiKey.parse(KEY), transport=httpx.MockTransport(handler), sleep=Sleeps())
    async with client:
        outcome = await client.create_sender_account(payload())
    assert outcome.outcome is ApiOutcome.OUTCOME_UNKNOWN
    assert outcome.finding.evidence["error"] == "DecodingError"
    assert "could not be decoded" in outcome.finding.message
    assert outcome.attempts == 1
    assert_no_secrets(outcome_text(outcome))


async def test_headers_sent_through_an_injected_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"Retry-After": "Wed, 99 Foo 2026 nonsense"})

    sleeps = Sleeps()
    client = PlatformClient(
        ApiKey.parse(KEY), transport=httpx.MockTransport(handler), sleep=sleeps, max_retries=1
    )
    async with client:
        outcome = await client.create_sender_account(payload(), idempotency_key="abc-1")
    assert outcome.outcome is ApiOutcome.RATE_LIMITED
    assert sleeps.waits == [1.0]  # an unreadable Retry-After falls back to the backoff
    assert [r.headers["Idempotency-Key"] for r in seen] == ["abc-1", "abc-1"]
    assert all(r.headers["X-API-Key"] == KEY for r in seen)
    assert str(seen[0].url) == "https://api.coldsend.io/api/public/v1/sender-accounts"
    assert json.loads(seen[0].content)["smtp_password"] == SMTP_PASSWORD
    assert "retry_after_seconds" not in outcome.finding.evidence
    assert outcome.finding.fix is not None and "in a few minutes" in outcome.finding.fix
