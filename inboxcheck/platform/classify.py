"""What a create call came to: each answer of the platform, each transport failure and a passed
deadline turned into a typed :class:`~inboxcheck.platform.outcomes.CreateOutcome` (or
:class:`~inboxcheck.platform.outcomes.BulkOutcome`) with one finding, its evidence scrubbed.

The request side, and the rules for what may be sent again, are in :mod:`inboxcheck.platform.client`;
the pure parsing of the platform's replies is in :mod:`inboxcheck.platform.replies`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx
from pydantic import JsonValue, ValidationError

from inboxcheck._models import Severity, finding
from inboxcheck._secrets import Scrubber
from inboxcheck.platform.key import API_KEY_ENV, ApiKey
from inboxcheck.platform.outcomes import (
    ApiOutcome,
    BulkItem,
    BulkOutcome,
    CreatedInbox,
    CreateOutcome,
)
from inboxcheck.platform.replies import (
    MESSAGE_MAX,
    REQUEST_ID_HEADERS,
    RETRY_AFTER_CAP,
    FieldError,
    parse_error_body,
    parse_retry_after,
)

# A request that provably never reached the server: the connection was not made.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_BODY_EXCERPT: Final = 300


@dataclass
class _Attempt:
    """What one exchange came to: a response, or the transport error that ended it."""

    response: httpx.Response | None
    body: bytes = b""
    error: httpx.RequestError | None = None
    deadline_passed: bool = False


def _bulk_from(
    outcome: CreateOutcome, *, job_id: str | None = None, items: tuple[BulkItem, ...] = ()
) -> BulkOutcome:
    return BulkOutcome(
        outcome=outcome.outcome,
        finding=outcome.finding,
        job_id=job_id,
        items=items,
        attempts=outcome.attempts,
        idempotency_key=outcome.idempotency_key,
        status_code=outcome.status_code,
        request_id=outcome.request_id,
    )


def _json_or_none(body: bytes) -> Any:
    """The JSON of a body, None when it is none. A byte that is not UTF-8 is data (U+FFFD), never a
    reason to lose a created inbox's id."""
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Result:
    attempt: _Attempt
    attempts: int
    waited: float
    history: tuple[str, ...]  # why earlier attempts were retried: "429", "503", "ConnectError"


# What each outcome maker returns: the outcome, severity, message, fix, and its own evidence.
_Made = tuple[ApiOutcome, Severity, str, str | None, dict[str, JsonValue]]


@dataclass(frozen=True)
class _Context:
    result: _Result
    scrub: Scrubber
    key: str
    url: str
    email: str | None
    api_key: ApiKey
    now: datetime

    @property
    def what(self) -> str:
        return f"the inbox {self.email}" if self.email else "the inbox"

    def outcome(
        self,
        outcome: ApiOutcome,
        severity: Severity,
        message: str,
        fix: str | None,
        evidence: dict[str, JsonValue],
        *,
        inbox: CreatedInbox | None = None,
    ) -> CreateOutcome:
        response = self.result.attempt.response
        status = response.status_code if response is not None else None
        request_id = _request_id(response, self.scrub) if response is not None else None
        full: dict[str, JsonValue] = {
            "url": self.url,
            "attempts": self.result.attempts,
            "idempotency_key": self.key,
        }
        if status is not None:
            full["status_code"] = status
        if request_id is not None:
            full["request_id"] = request_id
        if self.result.history:
            full["retried_after"] = list(self.result.history)
        if self.result.waited:
            full["waited_seconds"] = round(self.result.waited, 3)
        full.update(evidence)
        clean = self.scrub.json(full)
        assert isinstance(clean, dict)
        item = finding(
            outcome.code,
            severity,
            self.scrub.text(message),
            fix=self.scrub.text(fix) if fix else None,
            **clean,
        )
        return CreateOutcome(
            outcome=outcome,
            finding=item,
            inbox=inbox,
            attempts=self.result.attempts,
            idempotency_key=self.key,
            status_code=status,
            request_id=request_id,
        )


def _request_id(response: httpx.Response, scrub: Scrubber) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return scrub.excerpt(value, 128)
    return None


def _check_first(ctx: _Context) -> str:
    return (
        f"Look in the platform's sender-account list for {ctx.email or 'the address'} before "
        f"running again; if it is not there, run again with the same idempotency key ({ctx.key}), "
        "which lets a platform that honours it recognise the retry."
    )


def _transport_failure(error: httpx.RequestError, ctx: _Context) -> _Made:
    kind = type(error).__name__
    evidence: dict[str, JsonValue] = {"error": kind, "detail": _exc_text(error, ctx.scrub)}
    if isinstance(error, _NOT_SENT):
        return (
            ApiOutcome.UNREACHABLE,
            Severity.ERROR,
            f"The platform at {ctx.url} could not be reached ({kind}) after {ctx.result.attempts} "
            f"attempt(s); {ctx.what} was not created.",
            "Check the API URL, your network and any proxy, then run again.",
            evidence,
        )
    if isinstance(error, httpx.TimeoutException):
        why = f"no answer came within the {kind.removesuffix('Timeout').lower()} timeout"
    elif isinstance(error, httpx.DecodingError):
        why = "the platform's answer could not be decoded"
    else:
        why = f"the connection failed after the request was sent ({kind})"
    return (
        ApiOutcome.OUTCOME_UNKNOWN,
        Severity.ERROR,
        f"It is unknown whether {ctx.what} was created: {why}, and the platform may have acted on "
        "the request. inboxcheck did not send it again, so that the inbox cannot be created "
        "twice.",
        _check_first(ctx),
        evidence,
    )


def _deadline_passed(deadline: float, ctx: _Context) -> _Made:
    return (
        ApiOutcome.OUTCOME_UNKNOWN,
        Severity.ERROR,
        f"It is unknown whether {ctx.what} was created: the platform had not finished answering "
        f"within the {deadline:g} s deadline of the create call, and it may have acted on the "
        "request. inboxcheck did not send it again, so that the inbox cannot be created twice.",
        _check_first(ctx),
        {"error": "deadline", "deadline_seconds": deadline},
    )


def _exc_text(error: BaseException, scrub: Scrubber) -> str:
    text = str(error) or type(error).__name__
    return scrub.excerpt(text, MESSAGE_MAX)


def _bad_response(data: Any, exc: Exception | None, ctx: _Context, *, bulk: bool = False) -> _Made:
    evidence: dict[str, JsonValue] = {}
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        evidence["inbox_id"] = ctx.scrub.excerpt(str(data["id"]), 128)
    if data is None:
        evidence["problem"] = "the body is not JSON"
        body = ctx.result.attempt.body
        evidence["body_excerpt"] = ctx.scrub.excerpt(body.decode("utf-8", "replace"), _BODY_EXCERPT)
    elif isinstance(exc, ValidationError):
        evidence["problem"] = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
    else:
        evidence["problem"] = "the body does not have the expected shape"
    what = "the batch" if bulk else ctx.what
    return (
        ApiOutcome.BAD_RESPONSE,
        Severity.ERROR,
        f"The platform answered the create call with success, but its answer could not be read, so "
        f"{what} may well exist on the platform.",
        _check_first(ctx),
        evidence,
    )


def _error_status(response: httpx.Response, body: bytes, ctx: _Context) -> _Made:
    status = response.status_code
    data = _json_or_none(body)
    problems = parse_error_body(data) if data is not None else []
    if data is None and body.strip():
        # Whole: cut before it is scrubbed, a secret cut in half would no longer be recognised.
        text = body.decode("utf-8", "replace").strip()
        problems = [FieldError(None, text)] if text else []
    clean = [
        FieldError(p.field, ctx.scrub.excerpt(p.message, MESSAGE_MAX) if p.message else None)
        for p in problems
    ]
    fields = [p.field for p in clean if p.field]
    message = "; ".join(
        f"{p.field}: {p.message}" if p.field and p.message else (p.message or p.field or "") for p in clean
    )
    evidence: dict[str, JsonValue] = {}
    if message:
        evidence["server_message"] = message
    if fields:
        evidence["fields"] = list(dict.fromkeys(fields))
    said = f" The platform said: {message}" if message else ""
    said = said if said.endswith((".", "!", "?")) or not said else f"{said}."

    if status in (401, 403):
        evidence["key_used"] = ctx.api_key.masked()
        how = "is missing or not valid" if status == 401 else "is not allowed to add sender accounts"
        return (
            ApiOutcome.KEY_REJECTED,
            Severity.FAIL,
            f"The platform refused the API key {ctx.api_key.masked()}: it {how} (HTTP {status}).{said}",
            f"Create a new key in the platform's API settings and pass it through ${API_KEY_ENV} "
            "or --api-key-file; check that it is a "
            f"{'live' if not ctx.api_key.is_test else 'test'} key for the right workspace.",
            evidence,
        )
    if status in (400, 422):
        named = ", ".join(dict.fromkeys(fields))
        target = f"the field{'s' if len(set(fields)) > 1 else ''} {named}" if named else "the account"
        return (
            ApiOutcome.REJECTED,
            Severity.FAIL,
            f"The platform rejected {target} (HTTP {status}); {ctx.what} was not created.{said}",
            f"Correct {named or 'the account'} in the account file and run again."
            if named
            else "Compare the account with the platform's documented limits and run again.",
            evidence,
        )
    if status == 409:
        if ctx.result.history and any(h != "429" for h in ctx.result.history):
            # An earlier attempt that may have reached the platform (a retried 503) may have made
            # it.
            return (
                ApiOutcome.DUPLICATE,
                Severity.FAIL,
                f"The platform says {ctx.what} already exists; an earlier attempt of this same run "
                f"(answered {', '.join(ctx.result.history)}) may have created it.{said}",
                "Look in the platform's sender-account list: if the inbox is there, it is the one "
                "this run created and nothing more needs doing.",
                evidence,
            )
        return (
            ApiOutcome.DUPLICATE,
            Severity.FAIL,
            f"The platform already has {ctx.what} (HTTP 409); inboxcheck did not create another.{said}",
            "Use the existing inbox on the platform, or delete it there first if it must be added again.",
            evidence,
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=ctx.now)
        if retry_after is not None:
            evidence["retry_after_seconds"] = round(retry_after, 1)
        if retry_after is None:
            later = "in a few minutes"
        elif retry_after >= RETRY_AFTER_CAP:
            later = "in a day or more (the platform asked for a wait at least that long)"
        else:
            later = f"in {round(retry_after)} seconds"
        return (
            ApiOutcome.RATE_LIMITED,
            Severity.ERROR,
            f"The platform is rate limiting this API key (HTTP 429) and still was after "
            f"{ctx.result.attempts} attempt(s); {ctx.what} was not created.{said}",
            f"Run again {later}; the platform refused the request before acting on it.",
            evidence,
        )
    if status >= 500:
        return (
            ApiOutcome.SERVER_ERROR,
            Severity.ERROR,
            f"The platform failed with HTTP {status} after receiving the create call; {ctx.what} "
            "was probably not created, but the platform may have stored it before failing, so "
            f"inboxcheck did not send it again.{said}",
            _check_first(ctx),
            evidence,
        )
    location = response.headers.get("Location")
    if location:
        evidence["location"] = ctx.scrub.excerpt(location, MESSAGE_MAX)
    return (
        ApiOutcome.UNEXPECTED_STATUS,
        Severity.ERROR,
        f"The platform answered the create call with HTTP {status}, which it does not document; "
        f"whether {ctx.what} was created is not known.{said}",
        f"Check that the API URL and path are the platform's. {_check_first(ctx)}",
        evidence,
    )


def _parse_bulk(data: Any, scrub: Scrubber) -> tuple[str, tuple[BulkItem, ...]] | None:
    if not isinstance(data, dict):
        return None
    job = data.get("job_id", data.get("jobId", data.get("id")))
    results = data.get("results", data.get("items"))
    if not isinstance(job, str | int) or isinstance(job, bool) or not isinstance(results, list):
        return None
    items: list[BulkItem] = []
    for position, entry in enumerate(results):
        if not isinstance(entry, dict):
            return None
        index = entry.get("index", position)
        status = str(entry.get("status", "")).lower()
        success = entry.get("success")
        created = success is True or status in ("created", "success", "ok", "pending", "active")
        problems = parse_error_body(entry) if not created else []
        first = problems[0] if problems else FieldError(None, None)
        inbox_id = entry.get("id", entry.get("inbox_id"))
        email_value = entry.get("email_address")
        items.append(
            BulkItem(
                index=index if isinstance(index, int) and not isinstance(index, bool) else position,
                email_address=email_value if isinstance(email_value, str) else None,
                created=created,
                inbox_id=str(inbox_id)
                if isinstance(inbox_id, str | int) and not isinstance(inbox_id, bool)
                else None,
                field=first.field,
                message=scrub.excerpt(first.message, MESSAGE_MAX) if first.message else None,
            )
        )
    return str(job), tuple(items)
