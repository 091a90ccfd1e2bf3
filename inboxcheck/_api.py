"""The platform client: the create call for a sender account, and nothing that could send it twice.

What the platform documents is in ``shared/api-contract.md``: ``POST
{base}/api/public/v1/sender-accounts`` with an ``X-API-Key`` header and a JSON body, answering with
the created inbox. Everything the documentation is silent about (error statuses, rate limits,
timeouts) is still turned into a distinct, typed :class:`CreateOutcome` carrying one
:class:`~inboxcheck.Finding` and its own exit code.

The rule that shapes this module: **inboxcheck never creates an inbox twice.** Every create carries
an ``Idempotency-Key`` (reused on every retry of that create), and a request is only repeated when
the platform provably did not act on it:

- the connection could not be opened (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``): the
  request never left this machine;
- ``429 Too Many Requests``: the platform refused the request before handling it, and said when to
  come back (``Retry-After``, bounded by ``max_retry_wait`` per wait and ``max_total_wait``
  overall).

Everything else that may have reached the platform is *not* repeated: a read timeout, a connection
dropped after the body was sent, and server errors (5xx). The platform does not document that it
honours ``Idempotency-Key``, so a retried 500 could create the inbox a second time; the user gets
``api.server_error`` with the idempotency key to reuse instead. ``retry_unavailable=True`` opts into
retrying ``503 Service Unavailable`` (which by RFC 9110 §15.6.4 means the server did not handle the
request) for a platform known to honour the key.

Secrets: the API key lives in :class:`ApiKey`, whose ``repr``/``str`` are masked, and is put on each
request's headers only (never on the client's default headers, whose repr httpx does not mask for
``X-API-Key``). Anything the server sends back (error messages, echoed bodies, header values) goes
through :class:`ApiScrubber` before it becomes evidence, so neither the key nor a password can reach a
finding, a log line or an exception message, even from a server that echoes the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import os
import re
import stat
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from inboxcheck._check import finding
from inboxcheck._errors import ApiError, ApiKeyError, OptionsError
from inboxcheck._models import Finding, Severity

__all__ = [
    "API_KEY_ENV",
    "BULK_MAX_ITEMS",
    "DEFAULT_BASE_URL",
    "DEFAULT_BULK_PATH",
    "DEFAULT_PATH",
    "KEY_PATTERN",
    "ApiExit",
    "ApiKey",
    "ApiOutcome",
    "ApiScrubber",
    "BulkItem",
    "BulkOutcome",
    "CreateFailed",
    "CreateOutcome",
    "CreatedInbox",
    "FieldError",
    "InboxStatus",
    "InsecureKeyFileWarning",
    "PlatformClient",
    "load_api_key",
    "parse_error_body",
    "parse_retry_after",
]

_log = logging.getLogger("inboxcheck.api")

DEFAULT_BASE_URL: Final = "https://api.coldsend.io"
DEFAULT_PATH: Final = "/api/public/v1/sender-accounts"
DEFAULT_BULK_PATH: Final = "/api/public/v1/sender-accounts/smtp/bulk"
API_KEY_ENV: Final = "COLDSEND_API_KEY"
BULK_MAX_ITEMS: Final = 100

# --------------------------------------------------------------------------------------------------
# The API key
# --------------------------------------------------------------------------------------------------

_KEY_PREFIXES: Final = ("cs_live_", "cs_test_")
# The contract only shows "cs_live_xxx". A real secret token is random and long; 16 characters is
# the least that is still a credential rather than a placeholder (the documentation's own "xxx" is
# refused), 256 the most that fits in a header without looking like a pasted file. The charset is
# the URL-safe base64 alphabet, which every token generator in common use stays within.
KEY_TOKEN_MIN: Final = 16
KEY_TOKEN_MAX: Final = 256
_KEY_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
KEY_PATTERN: Final = re.compile(
    r"^cs_(?:live|test)_[A-Za-z0-9_-]{%d,%d}$" % (KEY_TOKEN_MIN, KEY_TOKEN_MAX)  # noqa: UP031
)
# Showing the last four characters helps a person tell which of their keys was used. It only costs
# 24 bits of a token that has at least 96 more, so it is shown only when that many stay hidden.
_MASK_SHOW_TAIL: Final = 4
_MASK_MIN_HIDDEN: Final = 16


class InsecureKeyFileWarning(UserWarning):
    """The API key file can be read by other users of this machine."""


class ApiKey:
    """A platform API key. Its ``repr`` and ``str`` never show it; only :meth:`reveal` does.

    >>> key = ApiKey.parse("cs_test_" + "a" * 20 + "wxyz")
    >>> key
    ApiKey('cs_test_…wxyz')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        _validate_key(value, source="the API key")
        self._value = value

    @classmethod
    def parse(cls, text: str, *, source: str = "the API key") -> ApiKey:
        """A key from text, exactly as given. :class:`ApiKeyError` names what is wrong, never the
        key."""
        _validate_key(text, source=source)
        return cls(text)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, name: str = API_KEY_ENV) -> ApiKey:
        """The key in the environment variable ``name`` (``COLDSEND_API_KEY``)."""
        env = os.environ if environ is None else environ
        value = env.get(name)
        if not value:
            raise ApiKeyError(
                f"No platform API key: the environment variable {name} is "
                f"{'empty' if value == '' else 'not set'}. Set it to your ColdSend key "
                f"(cs_live_... or cs_test_...), or pass --api-key-file with a file that holds it."
            )
        return cls.parse(value, source=f"the API key in ${name}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ApiKey:
        """The key in a file: its whole content, less one trailing newline.

        A regular file that other users can read is accepted with an :class:`InsecureKeyFileWarning`
        (refusing would break Kubernetes and Docker secrets, which are mounted 0644/0444 by
        default). Pipes such as ``--api-key-file <(pass show coldsend)`` are read as they are."""
        file = Path(path)
        source = f"the API key file {file}"
        try:
            with file.open("rb") as handle:
                info = os.fstat(handle.fileno())
                if stat.S_ISDIR(info.st_mode):
                    raise ApiKeyError(f"{source} is a directory; pass the file that holds the key.")
                raw = handle.read(KEY_TOKEN_MAX + 64)
        except IsADirectoryError:
            raise ApiKeyError(f"{source} is a directory; pass the file that holds the key.") from None
        except FileNotFoundError:
            raise ApiKeyError(f"{source} does not exist; check the path given to --api-key-file.") from None
        except PermissionError:
            raise ApiKeyError(
                f"{source} cannot be read by this user; fix its permissions (chmod 600 is enough)."
            ) from None
        except OSError as exc:
            raise ApiKeyError(f"{source} cannot be read: {exc.strerror or type(exc).__name__}.") from None
        if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            who = "everyone on this machine" if info.st_mode & stat.S_IROTH else "its group"
            warnings.warn(
                InsecureKeyFileWarning(
                    f"{source} can be read by {who} (mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"restrict it with: chmod 600 {file}"
                ),
                stacklevel=2,
            )
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ApiKeyError(
                f"{source} holds bytes that are not ASCII; an API key is plain text "
                f"(cs_live_... or cs_test_...). Check the file's encoding and content."
            ) from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise ApiKeyError(
                f"{source} is empty; write your ColdSend key (cs_live_... or cs_test_...) into it."
            )
        return cls.parse(text, source=source)

    @property
    def kind(self) -> str:
        """``live`` or ``test``."""
        return self._value[3:7]

    @property
    def is_test(self) -> bool:
        return self.kind == "test"

    def reveal(self) -> str:
        """The key itself, for the request header. Never log or print it."""
        return self._value

    def masked(self) -> str:
        """``cs_live_…abcd``: the prefix, and the last four characters when enough stay hidden."""
        prefix, token = self._value[:8], self._value[8:]
        if len(token) - _MASK_SHOW_TAIL >= _MASK_MIN_HIDDEN:
            return f"{prefix}…{token[-_MASK_SHOW_TAIL:]}"
        return f"{prefix}…"

    def __repr__(self) -> str:
        return f"ApiKey({self.masked()!r})"

    def __str__(self) -> str:
        return self.masked()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiKey):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> Any:
        # Pickling would write the key in clear to wherever the pickle goes.
        raise TypeError("an ApiKey cannot be pickled; pass the key through the environment or a file")


def _validate_key(text: str, *, source: str) -> None:
    if not isinstance(text, str):
        raise ApiKeyError(f"{source} must be text, not {type(text).__name__}.")
    if not text:
        raise ApiKeyError(f"{source} is empty; it should look like cs_live_... or cs_test_....")
    for index, char in enumerate(text):
        if char in "\r\n":
            raise ApiKeyError(
                f"{source} contains a line break (at character {index + 1}); a key is a single "
                "line. Remove the extra lines, or pass a file with only the key in it."
            )
        if char.isspace():
            raise ApiKeyError(
                f"{source} contains whitespace (at character {index + 1}); remove the spaces "
                "around or inside the key, as copied from the platform."
            )
    if not text.startswith(_KEY_PREFIXES):
        hint = ""
        if text.lower().startswith(_KEY_PREFIXES):
            hint = " (the prefix must be lower case)"
        elif text.startswith("cs_"):
            hint = " (only live and test keys exist)"
        raise ApiKeyError(
            f"{source} does not start with cs_live_ or cs_test_{hint}; copy the key from the "
            f"platform's API settings page."
        )
    token = text[8:]
    if len(token) < KEY_TOKEN_MIN:
        raise ApiKeyError(
            f"{source} is too short: {len(token)} characters follow the prefix, a real key has at "
            f"least {KEY_TOKEN_MIN}. Copy the whole key, not a placeholder."
        )
    if len(token) > KEY_TOKEN_MAX:
        raise ApiKeyError(
            f"{source} is too long: more than {KEY_TOKEN_MAX} characters follow the prefix. Check "
            "that only the key was copied."
        )
    if not _KEY_TOKEN.fullmatch(token):
        position = next(i for i, c in enumerate(token) if not _KEY_TOKEN.fullmatch(c)) + 9
        raise ApiKeyError(
            f"{source} has a character that is not a letter, digit, '_' or '-' (at character "
            f"{position}); copy the key again from the platform."
        )


def load_api_key(
    *, key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> ApiKey:
    """The key for a run: from ``key_file`` when given (``--api-key-file``), else
    ``$COLDSEND_API_KEY``."""
    if key_file is not None:
        return ApiKey.from_file(key_file)
    return ApiKey.from_env(environ)


# --------------------------------------------------------------------------------------------------
# Scrubbing what the server sends back
# --------------------------------------------------------------------------------------------------

_REDACTED: Final = "[redacted]"
# Below this length a secret is also a common word fragment ("abc" in "abcdef"), so it is only
# removed where it stands alone, not inside other words.
_SUBSTRING_MIN: Final = 6
_SECRET_KEY_NAME = re.compile(r"pass(word)?|secret|api[_-]?key|token|authorization", re.IGNORECASE)


class ApiScrubber:
    """Removes given secrets from text and JSON values, however the server may have quoted them.

    A secret is looked for as it is, JSON-escaped (as it appears inside an echoed JSON body) and
    percent-encoded (as in an echoed form or URL). JSON objects also lose every value under a key
    that names a secret (``smtp_password``, ``api_key``...), whatever its value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            forms.add(secret)
            forms.add(json.dumps(secret)[1:-1])
            forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
            from urllib.parse import quote, quote_plus

            forms.add(quote(secret, safe=""))
            forms.add(quote_plus(secret, safe=""))
        long_forms = sorted((f for f in forms if len(f) >= _SUBSTRING_MIN), key=len, reverse=True)
        short_forms = sorted((f for f in forms if len(f) < _SUBSTRING_MIN), key=len, reverse=True)
        parts = [re.escape(f) for f in long_forms]
        parts += [rf"(?<![A-Za-z0-9]){re.escape(f)}(?![A-Za-z0-9])" for f in short_forms]
        self._pattern = re.compile("|".join(parts)) if parts else None

    @classmethod
    def for_request(cls, api_key: ApiKey, *payloads: Mapping[str, Any]) -> ApiScrubber:
        """A scrubber for the key and every password of ``payloads``."""
        secrets = [api_key.reveal()]
        for payload in payloads:
            secrets.extend(_payload_secrets(payload))
        return cls(secrets)

    def logging_filter(self) -> logging.Filter:
        """A filter for a log *handler* that removes the secrets from every record it passes.

        inboxcheck never logs a secret, and httpx/httpcore never log request headers or bodies, but
        httpcore logs *response* headers verbatim at DEBUG: a server that echoed a password into a
        header would show there. Attach this to the handler that shows ``--debug`` output.
        """
        return _ScrubbingFilter(self)

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(_REDACTED, value)

    def json(self, value: Any) -> JsonValue:
        """A JSON value with every secret removed; secret-named keys lose their values entirely."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, Mapping):
            out: dict[str, JsonValue] = {}
            for key, item in value.items():
                name = self.text(str(key))
                out[name] = _REDACTED if _SECRET_KEY_NAME.search(name) else self.json(item)
            return out
        if isinstance(value, list | tuple):
            return [self.json(item) for item in value]
        return self.text(str(value))


class _ScrubbingFilter(logging.Filter):
    def __init__(self, scrubber: ApiScrubber) -> None:
        super().__init__()
        self._scrub = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._scrub.text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = self._scrub.text(record.exc_text)
        return True


def _payload_secrets(payload: Mapping[str, Any]) -> list[str]:
    return [
        value for key, value in payload.items() if isinstance(value, str) and _SECRET_KEY_NAME.search(key)
    ]


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


class InboxStatus(StrEnum):
    """The created inbox's state on the platform."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"


class CreatedInbox(BaseModel):
    """The platform's answer to a successful create ("Sender account added successfully").

    Fields the platform adds beyond the documented ones are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    email_address: str
    display_name: str
    inbox_type: str
    daily_limit: int
    status: InboxStatus
    created_at: datetime

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # Integer ids and UUIDs are both in use; the id is only ever shown and passed back.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class ApiOutcome(StrEnum):
    """What became of one create call. Each has its own finding code and exit code."""

    CREATED = "created"
    KEY_REJECTED = "key_rejected"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    OUTCOME_UNKNOWN = "outcome_unknown"
    SERVER_ERROR = "server_error"
    UNREACHABLE = "unreachable"
    UNEXPECTED_STATUS = "unexpected_status"
    BAD_RESPONSE = "bad_response"

    @property
    def code(self) -> str:
        """The stable finding code, e.g. ``api.key_rejected``."""
        return f"api.{self.value}"

    @property
    def exit_code(self) -> int:
        return int(ApiExit[self.name])

    @property
    def may_exist(self) -> bool:
        """Whether the inbox may exist on the platform after this outcome (check before
        retrying)."""
        return self in _MAY_EXIST


class ApiExit(IntEnum):
    """Exit codes of the create step; above the check codes (0 pass, 1 fail, 2 usage, 3 could not
    tell)."""

    CREATED = 0
    KEY_REJECTED = 4
    REJECTED = 5
    DUPLICATE = 6
    RATE_LIMITED = 7
    OUTCOME_UNKNOWN = 8
    SERVER_ERROR = 9
    UNREACHABLE = 10
    UNEXPECTED_STATUS = 11
    BAD_RESPONSE = 12


_MAY_EXIST: Final = frozenset(
    {
        ApiOutcome.CREATED,
        ApiOutcome.DUPLICATE,
        ApiOutcome.OUTCOME_UNKNOWN,
        ApiOutcome.SERVER_ERROR,
        ApiOutcome.UNEXPECTED_STATUS,
        ApiOutcome.BAD_RESPONSE,
    }
)


class CreateOutcome(BaseModel):
    """The result of :meth:`PlatformClient.create_sender_account`.

    ``inbox`` is set only for :attr:`ApiOutcome.CREATED`. ``finding`` always describes the outcome
    (``info`` for a created inbox). ``attempts`` counts the HTTP requests made; every one of them
    carried ``idempotency_key``.
    """

    model_config = ConfigDict(frozen=True)

    outcome: ApiOutcome
    finding: Finding
    inbox: CreatedInbox | None = None
    attempts: int = Field(ge=0)
    idempotency_key: str
    status_code: int | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is ApiOutcome.CREATED

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def raise_for_outcome(self) -> CreatedInbox:
        """The created inbox, or :class:`ApiError` carrying this outcome."""
        if self.inbox is not None and self.ok:
            return self.inbox
        raise CreateFailed(self)


class CreateFailed(ApiError):
    """A create call that did not create an inbox; ``outcome`` says what happened instead."""

    def __init__(self, outcome: CreateOutcome) -> None:
        self.outcome = outcome
        self.exit_code = outcome.exit_code
        text = outcome.finding.message
        if outcome.finding.fix:
            text = f"{text} {outcome.finding.fix}"
        super().__init__(text)


class BulkItem(BaseModel):
    """One account's result in a bulk create, as far as the platform said."""

    model_config = ConfigDict(frozen=True)

    index: int
    email_address: str | None = None
    created: bool
    inbox_id: str | None = None
    field: str | None = None
    message: str | None = None


class BulkOutcome(BaseModel):
    """The result of :meth:`PlatformClient.create_sender_accounts_bulk`.

    ``outcome`` is :attr:`ApiOutcome.CREATED` when the platform accepted the batch, whatever each
    item's result; ``items`` then holds one :class:`BulkItem` per account it reported on."""

    model_config = ConfigDict(frozen=True)

    outcome: ApiOutcome
    finding: Finding
    job_id: str | None = None
    items: tuple[BulkItem, ...] = ()
    attempts: int = Field(ge=0)
    idempotency_key: str
    status_code: int | None = None
    request_id: str | None = None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


# --------------------------------------------------------------------------------------------------
# Parsing error bodies (pure)
# --------------------------------------------------------------------------------------------------

_MESSAGE_MAX: Final = 300
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}$")
_REQUEST_ID_HEADERS: Final = (
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "x-trace-id",
    "cf-ray",
)


@dataclass(frozen=True)
class FieldError:
    """One problem the platform named in an error body; ``field`` is None when it named none."""

    field: str | None
    message: str | None


def parse_error_body(body: Any) -> list[FieldError]:
    """The problems an error body names, for the common shapes of JSON error bodies.

    FastAPI ``{"detail": [{"loc": [..., "field"], "msg": ...}]}``, Rails/Django ``{"errors":
    {"field": ["msg"]}}`` and ``{"errors": [{"field":..., "message":...}]}``, ``{"error":
    {"field":..., "message":...}}``, ``{"error": "msg"}``, flat ``{"field":..., "message":...}`` and
    ``{"detail"|"message"|"error_description": "msg"}``. The input value FastAPI echoes is never
    read."""
    if isinstance(body, str):
        return [FieldError(None, body)] if body.strip() else []
    if not isinstance(body, dict):
        return []
    problems: list[FieldError] = []
    detail = body.get("detail")
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict):
                problems.append(FieldError(_field_from_loc(item.get("loc")), _text(item.get("msg"))))
    elif isinstance(detail, str):
        problems.append(FieldError(_field_name(body.get("field")), detail))
    errors = body.get("errors")
    if isinstance(errors, dict):
        for name, messages in errors.items():
            message = messages[0] if isinstance(messages, list) and messages else messages
            problems.append(FieldError(_field_name(name), _text(message)))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                field = _field_name(item.get("field") or item.get("param") or item.get("path"))
                problems.append(FieldError(field, _text(item.get("message") or item.get("msg"))))
            elif isinstance(item, str):
                problems.append(FieldError(None, item))
    error = body.get("error")
    if isinstance(error, dict):
        field = _field_name(error.get("field") or error.get("param"))
        message = _text(error.get("message") or error.get("detail") or error.get("msg"))
        if field or message:
            problems.append(FieldError(field, message))
    elif isinstance(error, str) and not problems:
        problems.append(FieldError(_field_name(body.get("field")), _text(body.get("message")) or error))
    if not problems:
        message = _text(body.get("message") or body.get("error_description") or body.get("title"))
        field = _field_name(body.get("field") or body.get("param"))
        if field or message:
            problems.append(FieldError(field, message))
    return problems


def _field_from_loc(loc: object) -> str | None:
    if not isinstance(loc, list):
        return None
    names = [part for part in loc if isinstance(part, str) and part not in ("body", "query", "header")]
    return _field_name(names[-1]) if names else None


def _field_name(value: object) -> str | None:
    if isinstance(value, str) and _FIELD_NAME.match(value):
        return value
    return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date, RFC 9110
    §10.2.3).

    None when absent or unreadable; an HTTP-date in the past is 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]

# A request that provably never reached the server: the connection was not made.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CONNECT_BACKOFF: Final = (0.5, 1.0, 2.0, 4.0)
_RATE_BACKOFF: Final = (1.0, 2.0, 4.0, 8.0)
_BODY_EXCERPT: Final = 300


def _backoff(steps: tuple[float, ...], attempts: int) -> float:
    return steps[min(attempts - 1, len(steps) - 1)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_base_url(base_url: str, *, allow_insecure_http: bool) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise OptionsError(
            f"The API URL {base_url!r} is not a URL ({exc}); pass e.g. {DEFAULT_BASE_URL}."
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise OptionsError(
            f"The API URL {base_url!r} must start with https:// and name a host, e.g. {DEFAULT_BASE_URL}."
        )
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise OptionsError(
            f"The API URL {base_url!r} is plain http: the API key and the mailbox passwords would "
            "cross the network unencrypted. Use https://, or a loopback address for a local test "
            "server."
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _join(base: httpx.URL, path: str) -> httpx.URL:
    prefix = base.path.rstrip("/")
    return base.copy_with(path=f"{prefix}/{path.lstrip('/')}")


@dataclass
class _Attempt:
    """What one exchange came to: a response, or the transport error that ended it."""

    response: httpx.Response | None
    body: bytes = b""
    error: httpx.RequestError | None = None


class PlatformClient:
    """The ColdSend platform's create call, with the retry rules that never create an inbox twice.

    Use as an async context manager::

        async with PlatformClient(ApiKey.from_env()) as client:
            outcome = await client.create_sender_account(account.api_payload(daily_limit=30))
        if not outcome.ok:
            print(outcome.finding.message, outcome.finding.fix)

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``sleep`` and ``clock``
    replace waiting and the wall clock (for ``Retry-After`` dates). ``max_retries`` bounds the
    retries of one create across all causes; ``max_retry_wait`` bounds each wait and
    ``max_total_wait`` their sum."""

    def __init__(
        self,
        api_key: ApiKey,
        *,
        base_url: str = DEFAULT_BASE_URL,
        path: str = DEFAULT_PATH,
        bulk_path: str = DEFAULT_BULK_PATH,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30,
        max_retries: int = 3,
        max_retry_wait: float = 60,
        max_total_wait: float = 120,
        retry_unavailable: bool = False,
        allow_insecure_http: bool = False,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
    ) -> None:
        if not isinstance(api_key, ApiKey):
            raise TypeError(
                "api_key must be an inboxcheck.ApiKey; build it with ApiKey.parse() or load_api_key()"
            )
        if not isinstance(timeout, httpx.Timeout) and timeout <= 0:
            raise OptionsError(f"The API timeout must be more than 0 seconds, not {timeout}.")
        if max_retries < 0:
            raise OptionsError(f"max_retries must be 0 or more, not {max_retries}.")
        self._key = api_key
        self._base = _check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.url = _join(self._base, path)
        self.bulk_url = _join(self._base, bulk_path)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.max_total_wait = max_total_wait
        self.retry_unavailable = retry_unavailable
        self._sleep = sleep
        self._clock = clock
        if transport is None:
            # No keep-alive: a POST written onto a connection the server had just closed fails in a
            # way that cannot tell "never read" from "read and acted on". A fresh connection per
            # request makes "could not connect" the only failure that proves the request was not
            # sent.
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            follow_redirects=False,  # a redirected POST would carry the passwords to another URL
            headers={"Accept": "application/json", "User-Agent": _user_agent()},
        )

    def __repr__(self) -> str:
        return f"PlatformClient({str(self._base)!r}, api_key={self._key!r})"

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- create ------------------------------------------------------------------------------------

    async def create_sender_account(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> CreateOutcome:
        """Create one sender account from ``payload`` (:meth:`Account.api_payload`).

        Never raises for anything the platform or the network did: every outcome, success included,
        is a :class:`CreateOutcome`. ``idempotency_key`` (a fresh uuid4 when None) is sent on the
        request and on every retry of it; pass the key of an earlier outcome to make a rerun safe on
        a platform that honours it."""
        key = idempotency_key or str(uuid.uuid4())
        _check_idempotency_key(key)
        scrub = ApiScrubber.for_request(self._key, payload)
        body = json.dumps(dict(payload), separators=(",", ":")).encode()
        result = await self._exchange(self.url, body, key, scrub)
        return self._create_outcome(result, scrub, key, email=_email_of(payload))

    async def create_sender_accounts_bulk(
        self, payloads: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BulkOutcome:
        """Create up to 100 sender accounts in one call to the bulk endpoint.

        The request body is ``{"accounts": [payload, ...]}``; the platform answers with a job id and
        one result per item (``{"job_id": ..., "results": [{"index", "email_address", "status",
        "id", "errors"}]}``; other spellings of those are read too). The same retry rules as a
        single create."""
        if not payloads:
            raise OptionsError("A bulk create needs at least one account.")
        if len(payloads) > BULK_MAX_ITEMS:
            raise OptionsError(
                f"A bulk create takes at most {BULK_MAX_ITEMS} accounts, not {len(payloads)}; split the list."
            )
        key = idempotency_key or str(uuid.uuid4())
        _check_idempotency_key(key)
        scrub = ApiScrubber.for_request(self._key, *payloads)
        body = json.dumps({"accounts": [dict(p) for p in payloads]}, separators=(",", ":")).encode()
        result = await self._exchange(self.bulk_url, body, key, scrub)
        return self._bulk_outcome(result, scrub, key)

    # -- the exchange and its retries --------------------------------------------------------------

    async def _exchange(self, url: httpx.URL, body: bytes, key: str, scrub: ApiScrubber) -> _Result:
        attempts = 0
        waited = 0.0
        history: list[str] = []
        while True:
            attempts += 1
            _log.debug("POST %s attempt %d (Idempotency-Key %s)", url, attempts, key)
            attempt = await self._send(url, body, key)
            reason, wait = self._retry_wait(attempt, attempts)
            if reason is not None and wait is not None and waited + wait <= self.max_total_wait:
                _log.debug("retrying %s in %.1f s after %s (Idempotency-Key %s)", url, wait, reason, key)
                history.append(reason)
                waited += wait
                await self._sleep(wait)
                continue
            return _Result(attempt=attempt, attempts=attempts, waited=waited, history=tuple(history))

    def _retry_wait(self, attempt: _Attempt, attempts: int) -> tuple[str | None, float | None]:
        """Why this attempt may be repeated and after how long; (None, None) when it must not be."""
        if attempts > self.max_retries:
            return None, None
        if attempt.error is not None:
            if isinstance(attempt.error, _NOT_SENT):
                return type(attempt.error).__name__, _backoff(_CONNECT_BACKOFF, attempts)
            return None, None
        assert attempt.response is not None
        status = attempt.response.status_code
        if status == 429 or (status == 503 and self.retry_unavailable):
            retry_after = parse_retry_after(attempt.response.headers.get("Retry-After"), now=self._clock())
            if retry_after is None:
                return str(status), _backoff(_RATE_BACKOFF, attempts)
            if retry_after > self.max_retry_wait:
                # Waiting less than asked would only be refused again; say when to come back
                # instead.
                return None, None
            return str(status), retry_after
        return None, None

    async def _send(self, url: httpx.URL, body: bytes, key: str) -> _Attempt:
        headers = {
            "X-API-Key": self._key.reveal(),
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        try:
            response = await self._http.post(url, content=body, headers=headers)
            return _Attempt(response=response, body=response.content)
        except httpx.RequestError as exc:
            # Transport errors, and also a body that cannot be decoded (httpx.DecodingError): the
            # platform answered, but what it said is lost. Never let one escape: httpx exceptions
            # carry the request, API key header included.
            _log.debug("POST %s failed: %s", url, type(exc).__name__)
            return _Attempt(response=None, error=exc)

    # -- turning an exchange into an outcome -------------------------------------------------------

    def _create_outcome(
        self, result: _Result, scrub: ApiScrubber, key: str, *, email: str | None
    ) -> CreateOutcome:
        attempt = result.attempt
        ctx = _Context(
            result=result,
            scrub=scrub,
            key=key,
            url=str(self.url),
            email=email,
            api_key=self._key,
            now=self._clock(),
        )
        if attempt.error is not None:
            return ctx.outcome(*_transport_failure(attempt.error, ctx))
        response = attempt.response
        assert response is not None
        status = response.status_code
        if status in (200, 201):
            try:
                data = json.loads(attempt.body)
                inbox = CreatedInbox.model_validate(data)
            except (ValueError, ValidationError) as exc:
                return ctx.outcome(*_bad_response(_json_or_none(attempt.body), exc, ctx))
            return ctx.outcome(
                ApiOutcome.CREATED,
                Severity.INFO,
                f"The platform created the inbox {inbox.email_address} (id {inbox.id}, status "
                f"{inbox.status.value}).",
                None,
                {"inbox_id": inbox.id, "inbox_status": inbox.status.value},
                inbox=inbox,
            )
        return ctx.outcome(*_error_status(response, attempt.body, ctx))

    def _bulk_outcome(self, result: _Result, scrub: ApiScrubber, key: str) -> BulkOutcome:
        attempt = result.attempt
        ctx = _Context(
            result=result,
            scrub=scrub,
            key=key,
            url=str(self.bulk_url),
            email=None,
            api_key=self._key,
            now=self._clock(),
        )
        if attempt.error is not None:
            created = ctx.outcome(*_transport_failure(attempt.error, ctx))
            return _bulk_from(created)
        response = attempt.response
        assert response is not None
        if response.status_code in (200, 201, 202):
            data = _json_or_none(attempt.body)
            parsed = _parse_bulk(data, scrub)
            if parsed is None:
                return _bulk_from(ctx.outcome(*_bad_response(data, None, ctx, bulk=True)))
            job_id, items = parsed
            created_count = sum(1 for item in items if item.created)
            outcome = ctx.outcome(
                ApiOutcome.CREATED,
                Severity.INFO if created_count == len(items) else Severity.WARN,
                f"The platform accepted the batch (job {job_id}): {created_count} of {len(items)} "
                f"accounts created.",
                None
                if created_count == len(items)
                else "Fix the accounts listed as failed and send only those again.",
                {"job_id": job_id, "created": created_count, "failed": len(items) - created_count},
            )
            return _bulk_from(outcome, job_id=job_id, items=items)
        return _bulk_from(ctx.outcome(*_error_status(response, attempt.body, ctx)))


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


def _user_agent() -> str:
    from inboxcheck._version import __version__

    return f"inboxcheck/{__version__}"


def _check_idempotency_key(key: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,255}", key):
        raise OptionsError(
            "The idempotency key must be 1-255 letters, digits, '-', '_', '.' or ':'; pass the key "
            "shown by the earlier attempt, or none for a fresh one."
        )


def _email_of(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("email_address")
    return value if isinstance(value, str) else None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
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
    scrub: ApiScrubber
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


def _request_id(response: httpx.Response, scrub: ApiScrubber) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return scrub.text(value[:128])
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


def _exc_text(error: BaseException, scrub: ApiScrubber) -> str:
    text = str(error) or type(error).__name__
    return scrub.text(text[:_MESSAGE_MAX])


def _bad_response(data: Any, exc: Exception | None, ctx: _Context, *, bulk: bool = False) -> _Made:
    evidence: dict[str, JsonValue] = {}
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        evidence["inbox_id"] = ctx.scrub.text(str(data["id"]))[:128]
    if data is None:
        evidence["problem"] = "the body is not JSON"
        body = ctx.result.attempt.body
        evidence["body_excerpt"] = ctx.scrub.text(body[:_BODY_EXCERPT].decode("utf-8", "replace"))
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
        text = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip()
        problems = [FieldError(None, text)] if text else []
    clean = [
        FieldError(p.field, ctx.scrub.text(p.message[:_MESSAGE_MAX]) if p.message else None) for p in problems
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
        later = f"in {round(retry_after)} seconds" if retry_after is not None else "in a few minutes"
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
        evidence["location"] = ctx.scrub.text(location[:_MESSAGE_MAX])
    return (
        ApiOutcome.UNEXPECTED_STATUS,
        Severity.ERROR,
        f"The platform answered the create call with HTTP {status}, which it does not document; "
        f"whether {ctx.what} was created is not known.{said}",
        f"Check that the API URL and path are the platform's. {_check_first(ctx)}",
        evidence,
    )


def _parse_bulk(data: Any, scrub: ApiScrubber) -> tuple[str, tuple[BulkItem, ...]] | None:
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
                message=scrub.text(first.message[:_MESSAGE_MAX]) if first.message else None,
            )
        )
    return str(job), tuple(items)
