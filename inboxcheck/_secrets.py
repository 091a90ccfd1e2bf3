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

import base64
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
    """Replaces every form of the given secrets and credentials in a text with ``[redacted]``.

    Beyond the exact forms it also removes (case-insensitively, since a server may echo a password
    upper-cased) any *prefix* of a form that holds at least :data:`SUBSTRING_MIN` characters of the
    secret: the start of a password where a text was cut (a bounded read, a server's truncated echo),
    and the base64 of every prefix boundary of the AUTH strings a login sent (a server that echoes
    ``AUTH PLAIN`` cut short quotes base64 that decodes to the password's first characters).
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        credentials: Iterable[Credential] = (),
        public_prefixes: Iterable[str] = (),
    ) -> None:
        """``public_prefixes``: leads of a secret that are no secret (an API key's ``cs_live_``); a
        prefix of such a secret counts from the end of its lead."""
        self._secrets = tuple(secrets)
        self._credentials = tuple(credentials)
        self._public = tuple(p for p in public_prefixes if p)
        wire: set[str] = set()
        pairs = [("", secret) for secret in self._secrets]
        for secret in self._secrets:
            wire |= Credential("", SecretStr(secret)).wire_forms()
        for credential in self._credentials:
            wire |= credential.wire_forms()
            pairs.append((credential.username, credential.reveal()))
        forms = {encoded for form in wire for encoded in _encodings(form) if encoded}
        self.forms: list[str] = sorted(forms, key=len, reverse=True)
        # anchor (lower-cased) -> the forms it starts; a match of the anchor extends along them
        self._extend: dict[str, set[str]] = {}
        for form in self.forms:
            if len(form) >= SUBSTRING_MIN:
                self._extend.setdefault(form.lower(), set()).add(form)
        whole = set(self._extend)
        # The start of a secret as typed counts where a text ends (it was cut there), and inside a
        # text where it holds more than letters (an echo cut short): a password "Password1!" must
        # not take the word "Password" out of "Username and Password not accepted".
        self._word_prefixes: set[str] = set()
        for username, secret in pairs:
            public = max((len(p) for p in self._public if secret.startswith(p)), default=0)
            for anchor, form in _prefix_anchors(username, secret, public):
                self._extend.setdefault(anchor.lower(), set()).add(form)
            if (
                len(secret) - public >= SUBSTRING_MIN
                and secret[: public + SUBSTRING_MIN].lower() not in whole
            ):
                self._word_prefixes.add(secret[: public + SUBSTRING_MIN].lower())
        # The expressions are compiled on first use: most texts are ruled out by substring search
        # first, and a batch builds a scrubber per account (compiling both was 9% of a DNS audit's CPU).
        self._long_pattern: re.Pattern[str] | None = None
        self._shorts = tuple(f for f in self.forms if len(f) < SUBSTRING_MIN)
        self._short_pattern: re.Pattern[str] | None = None
        self._needles: list[str] | None = None

    @property
    def _long(self) -> re.Pattern[str] | None:
        if self._long_pattern is None and self._extend:
            anchors = sorted(self._extend, key=len, reverse=True)
            self._long_pattern = re.compile("|".join(re.escape(anchor) for anchor in anchors), re.IGNORECASE)
        return self._long_pattern

    @property
    def _short(self) -> re.Pattern[str] | None:
        if self._short_pattern is None and self._shorts:
            short = "|".join(re.escape(form) for form in self._shorts)
            self._short_pattern = re.compile(rf"(?<!\w)(?:{short})(?!\w)")
        return self._short_pattern

    @classmethod
    def for_account(cls, account: Account) -> Scrubber:
        return cls(credentials=(account.smtp_credential, account.imap_credential))

    @classmethod
    def for_request(cls, api_key: ApiKey, *payloads: Mapping[str, Any]) -> Scrubber:
        """A scrubber for the key and every secret-named value of ``payloads``."""
        secrets = [api_key.reveal()]
        for payload in payloads:
            secrets.extend(v for k, v in payload.items() if isinstance(v, str) and is_secret_name(k))
        return cls(secrets, public_prefixes=(api_key.prefix,))

    def with_secrets(self, *secrets: str, credentials: Iterable[Credential] = ()) -> Scrubber:
        """A scrubber for everything this one hides, and ``secrets`` and ``credentials`` too."""
        return Scrubber(
            (*self._secrets, *secrets),
            credentials=(*self._credentials, *credentials),
            public_prefixes=self._public,
        )

    def __call__(self, text: str) -> str:
        if self._extend:
            text = self._redact_long(text)
        if self._shorts and any(form in text for form in self._shorts):
            # A short form is only taken out as a whole word: a text without it as a substring has none.
            assert self._short is not None
            text = self._short.sub(REDACTED, text)
        return text

    text = __call__

    def _redact_long(self, text: str) -> str:
        if text.isascii():  # the common case, answered by substring search: no anchor, nothing to do
            lowered = text.lower()
            if not any(anchor in lowered for anchor in self._extend):
                return text
        pattern = self._long
        assert pattern is not None
        out: list[str] = []
        pos = after = 0
        while (match := pattern.search(text, after)) is not None:
            start, end = match.span()
            key = match.group().lower()
            for form in self._extend.get(key, ()):
                end = max(end, start + _common_prefix(text, start, form))
            if key in self._word_prefixes and end < len(text) and text[start:end].isalpha():
                after = start + 1  # a word that begins like the secret, not the secret cut short
                continue
            out += (text[pos:start], REDACTED)
            pos = after = end
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def excerpt(self, text: str, limit: int) -> str:
        """At most ``limit`` characters of ``text`` with no secret in them: scrubbed whole first, then
        cut (a secret cut in half would no longer be recognised), and a ``[redacted]`` cut in half
        dropped rather than left looking like text."""
        clean = self(text)
        if len(clean) <= limit:
            return clean
        cut = clean[:limit]
        for size in range(len(REDACTED) - 1, 0, -1):
            if (
                cut.endswith(REDACTED[:size])
                and clean[limit - size : limit - size + len(REDACTED)] == REDACTED
            ):
                return cut[:-size]
        return cut

    def bytes(self, data: bytes) -> bytes:
        """:meth:`text` on raw bytes (undecodable bytes kept as they are)."""
        text = data.decode(errors="surrogateescape")  # UTF-8
        clean = self(text)
        return data if clean == text else clean.encode(errors="surrogateescape")

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
            for anchor in self._extend:
                with contextlib.suppress(PydanticSerializationError):
                    needles.add(to_json(anchor).decode()[1:-1].lower())
            self._needles = sorted(needles, key=len)
        folded = document.lower()
        return any(needle in document or needle in folded for needle in self._needles)

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


def _prefix_anchors(username: str, secret: str, public: int) -> Iterable[tuple[str, str]]:
    """For each form whose prefixes must go too: the shortest prefix that holds
    :data:`SUBSTRING_MIN` characters of the secret (after its ``public`` lead), and the whole form."""
    if len(secret) - public < SUBSTRING_MIN:
        return
    yield secret[: public + SUBSTRING_MIN], secret
    # (Every encode and decode here is UTF-8, Python's default.)
    # The AUTH strings a login sends (AUTH LOGIN: the secret; PLAIN: with an empty and with a repeated
    # authorization identity), base64: a prefix of the encoding that covers the lead and 6 characters.
    for lead in ("", f"\0{username}\0", f"{username}\0{username}\0"):
        lead_bytes = len(lead.encode(errors="surrogatepass"))
        six = len(secret[: public + SUBSTRING_MIN].encode(errors="surrogatepass"))
        whole = base64.b64encode((lead + secret).encode(errors="surrogatepass")).decode()
        need = -(-(lead_bytes + six) * 4 // 3)
        yield whole[:need], whole
        # Re-encoded after the cut: a prefix that ends inside a base64 group is padded, and its last
        # character differs from the whole string's; each such boundary is a form of its own.
        for end in range(public + SUBSTRING_MIN, len(secret)):
            data = (lead + secret[:end]).encode(errors="surrogatepass")
            if len(data) % 3:
                form = base64.b64encode(data).decode()
                yield form, form


def _common_prefix(text: str, start: int, form: str) -> int:
    """How many characters of ``form`` (ignoring case) ``text`` holds from ``start``."""
    size = 0
    for char, want in zip(text[start : start + len(form)], form, strict=False):
        if char != want and char.lower() != want.lower():
            break
        size += 1
    return size


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
        # A handler's formatter renders the traceback only after the filters ran, and keeps what it
        # finds in exc_text: render it here, so that the text it prints is the scrubbed one.
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        return True


# Only its formatException is used: the same rendering logging.Formatter gives a traceback.
_TRACEBACKS: Final = logging.Formatter()
