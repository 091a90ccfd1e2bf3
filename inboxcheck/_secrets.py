"""Keeping passwords out of everything a check produces.

A check that quotes a server's reply (as evidence, or in a message) first passes it through the
account's :class:`Scrubber`: a hostile or broken server may echo what it was sent. The forms covered
are those a password takes on the wire: as typed, IMAP-quoted, and base64 as in AUTH PLAIN and AUTH
LOGIN. The runner redacts again as a last line of defence; checks do not rely on it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pydantic import JsonValue

from inboxcheck._models import Account

if TYPE_CHECKING:
    from inboxcheck.platform.key import ApiKey

__all__ = ["REDACTED", "SUBSTRING_MIN", "Scrubber", "secret_forms"]

REDACTED = "[redacted]"
# A form shorter than this is also a fragment of ordinary words ("a", "pass"): it is removed only where
# it stands alone as a token, so that a short password does not mangle a server's reply.
SUBSTRING_MIN: Final = 6


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8", "surrogatepass")).decode("ascii")


def secret_forms(username: str, password: str) -> set[str]:
    """Every form in which ``password`` can appear on an SMTP or IMAP wire."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    forms = {
        password,
        quoted,
        f'"{quoted}"',
        _b64(password),
        _b64(f"\0{username}\0{password}"),
        _b64(f"{username}\0{username}\0{password}"),
    }
    return {form for form in forms if form}


class Scrubber:
    """Replaces every secret form in a text with ``[redacted]``; longest forms first."""

    def __init__(self, forms: Iterable[str]) -> None:
        self.forms = sorted({f for f in forms if f}, key=len, reverse=True)
        self._long = [f for f in self.forms if len(f) >= SUBSTRING_MIN]
        short = [re.escape(f) for f in self.forms if len(f) < SUBSTRING_MIN]
        self._short = re.compile(rf"(?<!\w)(?:{'|'.join(short)})(?!\w)") if short else None

    @classmethod
    def for_account(cls, account: Account) -> Scrubber:
        forms: set[str] = set()
        forms |= secret_forms(account.smtp_username, account.smtp_password.get_secret_value())
        forms |= secret_forms(account.imap_username, account.imap_password.get_secret_value())
        return cls(forms)

    def __call__(self, text: str) -> str:
        for form in self._long:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        return text


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
