"""Reading the platform's replies (pure): error bodies into field errors, ``Retry-After`` into seconds."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

# --------------------------------------------------------------------------------------------------
# Parsing error bodies (pure)
# --------------------------------------------------------------------------------------------------

MESSAGE_MAX: Final = 300
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}$")
REQUEST_ID_HEADERS: Final = (
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


# Longer than any wait worth making: such a value is read as "not today", so the run stops at once as
# rate limited instead of sleeping, and no digit string can overflow a float or Python's int parser.
RETRY_AFTER_CAP: Final = 86_400.0
_DELAY_SECONDS: Final = re.compile(r"[0-9]+", re.ASCII)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date, RFC 9110
    §10.2.3), at most :data:`RETRY_AFTER_CAP`.

    None when absent or unreadable (``"\xb2"`` is a digit to ``str.isdigit`` but not to HTTP); an
    HTTP-date in the past is 0. Never raises.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        digits = value.lstrip("0") or "0"
        if len(digits) > len(str(int(RETRY_AFTER_CAP))):
            return RETRY_AFTER_CAP
        return min(float(digits), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        seconds = (when - now).total_seconds()
    except OverflowError:
        return RETRY_AFTER_CAP
    return min(max(0.0, seconds), RETRY_AFTER_CAP)
