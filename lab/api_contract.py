"""The platform's create-inbox contract, as the API double enforces it (``shared/api-contract.md``).

The paths, the key's format, every field's type and limits, the daily-limit maximum per inbox type
(:func:`validate_account`), and the masks the double's log and error bodies put on keys and
passwords. Not part of the inboxcheck wheel; standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "BULK_MAX",
    "DEFAULT_BULK_PATH",
    "DEFAULT_DAILY_LIMIT",
    "DEFAULT_PATH",
    "KEY_FORMAT",
    "MASK",
    "MAX_DAILY_LIMIT",
    "field_error",
    "masked_body",
    "masked_headers",
    "validate_account",
]


DEFAULT_PATH: Final = "/api/public/v1/sender-accounts"
DEFAULT_BULK_PATH: Final = "/api/public/v1/sender-accounts/smtp/bulk"
#: The platform's documented maximum daily limit per inbox type (OUTLOOK_365: the larger of the two
#: figures the documentation gives).
MAX_DAILY_LIMIT: Final = {"GOOGLE_WORKSPACE": 2000, "OUTLOOK_365": 10000, "CUSTOM_SMTP": 100000}
DEFAULT_DAILY_LIMIT: Final = 100
BULK_MAX: Final = 100
KEY_FORMAT: Final = re.compile(r"^cs_(?:live|test)_[A-Za-z0-9_-]{16,256}$")
MASK: Final = "********"

_SECRET_FIELD = re.compile(r"password|secret|api[_-]?key|token", re.IGNORECASE)
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")

_STRING_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "email_address": (5, 255),
    "display_name": (1, 255),
    "smtp_host": (1, 255),
    "smtp_username": (1, 255),
    "smtp_password": (1, 500),
    "imap_host": (1, 255),
    "imap_username": (1, 255),
    "imap_password": (1, 500),
}
_PORTS: Final = ("smtp_port", "imap_port")
_BOOLS: Final = ("smtp_use_tls", "imap_use_ssl")
_REQUIRED: Final = (*_STRING_LIMITS, "inbox_type", *_PORTS)
_KNOWN: Final = frozenset({*_REQUIRED, "daily_limit", *_BOOLS})


# --------------------------------------------------------------------------------------------------
# Validation: the contract table, field by field
# --------------------------------------------------------------------------------------------------


def field_error(
    loc: list[str | int], kind: str, msg: str, value: Any = None, *, echo: bool = True
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg}
    if echo:
        error["input"] = value
    return error


def validate_account(data: Any) -> list[dict[str, Any]]:
    """FastAPI-style errors for a create body; empty when the platform would accept it.

    Inputs are echoed like FastAPI does, except secret fields, whose input is masked.
    """
    if not isinstance(data, dict):
        return [field_error(["body"], "model_type", "Input should be a JSON object.", echo=False)]
    errors: list[dict[str, Any]] = []

    def bad(name: str, kind: str, msg: str) -> None:
        value = data.get(name)
        shown = MASK if _SECRET_FIELD.search(name) and value is not None else value
        errors.append(field_error(["body", name], kind, msg, shown))

    for name in data:
        if name not in _KNOWN:
            errors.append(
                field_error(["body", name], "extra_forbidden", "Extra inputs are not permitted.", echo=False)
            )
    for name in _REQUIRED:
        if name not in data:
            errors.append(field_error(["body", name], "missing", "Field required.", echo=False))
    for name, (low, high) in _STRING_LIMITS.items():
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, str):
            bad(name, "string_type", "Input should be a valid string.")
        elif len(value) < low:
            bad(
                name,
                "string_too_short",
                f"String should have at least {low} character{'s' if low > 1 else ''}.",
            )
        elif len(value) > high:
            bad(name, "string_too_long", f"String should have at most {high} characters.")
    email = data.get("email_address")
    if isinstance(email, str) and 5 <= len(email) <= 255 and not _valid_email(email):
        bad("email_address", "value_error", "value is not a valid email address.")
    for name in _PORTS:
        if name not in data:
            continue
        value = data[name]
        if not _is_int(value):
            bad(name, "int_type", "Input should be a valid integer.")
        elif not 1 <= value <= 65535:
            bad(name, "less_than_equal" if value > 65535 else "greater_than_equal", "Port must be 1-65535.")
    inbox_type = data.get("inbox_type")
    if "inbox_type" in data and not (isinstance(inbox_type, str) and inbox_type in MAX_DAILY_LIMIT):
        bad("inbox_type", "enum", "Input should be 'GOOGLE_WORKSPACE', 'OUTLOOK_365' or 'CUSTOM_SMTP'.")
    if "daily_limit" in data:
        value = data["daily_limit"]
        if not _is_int(value):
            bad("daily_limit", "int_type", "Input should be a valid integer.")
        elif value < 1:
            bad("daily_limit", "greater_than_equal", "Input should be greater than or equal to 1.")
        elif (
            isinstance(inbox_type, str)
            and inbox_type in MAX_DAILY_LIMIT
            and value > MAX_DAILY_LIMIT[inbox_type]
        ):
            bad(
                "daily_limit",
                "less_than_equal",
                f"daily_limit may be at most {MAX_DAILY_LIMIT[inbox_type]} for {inbox_type}.",
            )
    for name in _BOOLS:
        if name in data and not isinstance(data[name], bool):
            bad(name, "bool_type", "Input should be a valid boolean.")
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_email(value: str) -> bool:
    if not _EMAIL.match(value):
        return False
    local, domain = value.split("@")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and all(labels)
        and all(not (lbl.startswith("-") or lbl.endswith("-")) for lbl in labels)
    )


# --------------------------------------------------------------------------------------------------
# Masks: what the double logs of a request
# --------------------------------------------------------------------------------------------------


def _mask_key(value: str) -> str:
    if KEY_FORMAT.match(value):
        return f"{value[:8]}…{value[-4:]}" if len(value) - 8 >= 20 else f"{value[:8]}…"
    return f"[malformed key, {len(value)} characters]"


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: (_mask_key(value) if name == "x-api-key" else MASK if name == "authorization" else value)
        for name, value in headers.items()
    }


def masked_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return f"[not JSON, {len(body)} bytes]"
    return _mask_json(data)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_FIELD.search(str(k)) else _mask_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value
