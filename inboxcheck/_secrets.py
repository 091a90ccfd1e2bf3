"""Keeping secrets out of everything inboxcheck shows: one scrubber, one JSON walker, one mask.

:class:`Scrubber` removes secrets from text in every form they can come back in: as typed, in an IMAP
quoted string, base64 as in AUTH PLAIN and AUTH LOGIN (the :class:`~inboxcheck._credential.Credential`
wire forms), and each of those JSON-escaped (an echoed JSON body) and percent-encoded (an echoed form or
URL). A check passes every server text through it before quoting it; the runner walks each result again
as a last line of defence; the platform client passes every response through it.

The token rule: a form shorter than :data:`SUBSTRING_MIN` is also a fragment of ordinary words (a
password ``a`` or ``pass``), so it is removed only as a whole token, where neither neighbour is a
letter, a digit or an underscore (Unicode ``\\w``): ``pass`` goes from "you sent pass" but stays in
"bypass" and "Password". Longer forms are removed wherever they occur.

:meth:`Scrubber.json` is the one walk over JSON values; :func:`masked` is the one mask for a payload
shown to a person (``connect --dry-run``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus

from pydantic import JsonValue, SecretStr
from pydantic_core import PydanticSerializationError, to_json

from inboxcheck._credential import Credential

if TYPE_CHECKING:
    from inboxcheck._models import Account
    from inboxcheck.platform.key import ApiKey

__all__ = ["MASK", "REDACTED", "SUBSTRING_MIN", "Scrubber", "is_secret_name", "masked"]

REDACTED: Final = "[redacted]"
# What a payload shown to a person has in place of a secret it is about to send: a placeholder, not a
# sign that something was removed from a reply.
MASK: Final = "********"
SUBSTRING_MIN: Final = 6

_SECRET_NAME = re.compile(r"pass(word)?|secret|api[_-]?key|token|authorization", re.IGNORECASE)


def is_secret_name(key: str) -> bool:
    """Whether a JSON key or header name says its value is a secret (``smtp_password``, ``apiKey``)."""
    return _SECRET_NAME.search(key) is not None


# quote(text, safe="") of an ASCII text, a character at a time (RFC 3986 unreserved kept, the rest %XX).
_QUOTE_ASCII: Final = {
    code: chr(code) if chr(code).isalnum() or chr(code) in "_.-~" else f"%{code:02X}" for code in range(128)
}


def _encodings(form: str) -> set[str]:
    # What json.dumps(form) and json.dumps(form, ensure_ascii=False) write for a str, without their
    # encoder set-up; quote_plus is quote unless there is a space. A scrubber is built per run (per
    # account in a batch), and these were most of its cost.
    quoted = form.translate(_QUOTE_ASCII) if form.isascii() else quote(form, safe="", errors="surrogatepass")
    return {
        form,
        encode_basestring_ascii(form)[1:-1],
        encode_basestring(form)[1:-1],
        quoted,
        quote_plus(form, safe="", errors="surrogatepass") if " " in form else quoted,
    }


class Scrubber:
    """Replaces every form of the given secrets and credentials in a text with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = (), *, credentials: Iterable[Credential] = ()) -> None:
        wire: set[str] = set()
        for secret in secrets:
            wire |= Credential("", SecretStr(secret)).wire_forms()
        for credential in credentials:
            wire |= credential.wire_forms()
        forms = {encoded for form in wire for encoded in _encodings(form) if encoded}
        self.forms: list[str] = sorted(forms, key=len, reverse=True)
        self._long = [f for f in self.forms if len(f) >= SUBSTRING_MIN]
        short = [re.escape(f) for f in self.forms if len(f) < SUBSTRING_MIN]
        self._short = re.compile(rf"(?<!\w)(?:{'|'.join(short)})(?!\w)") if short else None
        self._needles: list[str] | None = None

    @classmethod
    def for_account(cls, account: Account) -> Scrubber:
        return cls(credentials=(account.smtp_credential, account.imap_credential))

    @classmethod
    def for_request(cls, api_key: ApiKey, *payloads: Mapping[str, Any]) -> Scrubber:
        """A scrubber for the key and every secret-named value of ``payloads``."""
        secrets = [api_key.reveal()]
        for payload in payloads:
            secrets.extend(v for k, v in payload.items() if isinstance(v, str) and is_secret_name(k))
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for form in self._long:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        return text

    text = __call__

    def bytes(self, data: bytes) -> bytes:
        """:meth:`text` on raw bytes (undecodable bytes kept as they are)."""
        text = data.decode("utf-8", "surrogateescape")
        clean = self(text)
        return data if clean == text else clean.encode("utf-8", "surrogateescape")

    def could_be_in_json(self, document: str) -> bool:
        """False only when no string in ``document``, a JSON text as pydantic writes it, holds a form
        of a secret: then :meth:`json` over the same value would change nothing, and a walk over it
        (its largest cost, every string visited) can be skipped.

        Sound because JSON escapes a string character by character: a string holding a form holds it
        escaped in the document. A form pydantic cannot write (a lone surrogate) cannot be in a
        document pydantic wrote.
        """
        if self._needles is None:
            needles = set()
            for form in self.forms:
                with contextlib.suppress(PydanticSerializationError):
                    needles.add(to_json(form).decode()[1:-1])
            self._needles = sorted(needles, key=len)
        return any(needle in document for needle in self._needles)

    def json(self, value: Any, *, identifiers: Collection[str] | None = None) -> JsonValue:
        """A JSON value with every secret removed.

        ``identifiers`` is for JSON inboxcheck built itself (a check result): its keys, and the string
        values under the keys named, are identifiers (codes, names) and stay verbatim. Without it the
        JSON came from outside (a server's body): keys are scrubbed too, and every value under a
        secret-named key is dropped, whatever it is.
        """
        if identifiers is None:
            return _walk(value, self, self, REDACTED, frozenset())
        return _walk(value, self, None, None, frozenset(identifiers))

    def logging_filter(self) -> logging.Filter:
        """A filter for a log *handler* that removes the secrets from every record it passes.

        inboxcheck never logs a secret, and httpx/httpcore never log request headers or bodies, but
        httpcore logs *response* headers verbatim at DEBUG: a server that echoed a password into a
        header would show there. Attach this to the handler that shows ``--debug`` output.
        """
        return _ScrubbingFilter(self)


def masked(payload: Mapping[str, Any]) -> dict[str, JsonValue]:
    """``payload`` as it may be shown to a person: every value under a secret-named key masked."""
    out = _walk(payload, None, None, MASK, frozenset())
    assert isinstance(out, dict)
    return out


def _walk(
    value: Any,
    text: Callable[[str], str] | None,
    key_text: Callable[[str], str] | None,
    hide_secret_names: str | None,
    verbatim: frozenset[str],
    key: str | None = None,
) -> JsonValue:
    if isinstance(value, str):
        return value if text is None or key in verbatim else text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for raw_key, item in value.items():
            name = key_text(str(raw_key)) if key_text is not None else str(raw_key)
            if hide_secret_names is not None and is_secret_name(name):
                out[name] = hide_secret_names
            else:
                out[name] = _walk(item, text, key_text, hide_secret_names, verbatim, name)
        return out
    if isinstance(value, list | tuple):
        return [_walk(item, text, key_text, hide_secret_names, verbatim) for item in value]
    return text(str(value)) if text is not None else str(value)


class _ScrubbingFilter(logging.Filter):
    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self._scrub = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True
