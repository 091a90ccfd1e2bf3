"""Keeping passwords out of everything a check produces.

A check that quotes a server's reply (as evidence, or in a message) first passes it through the
account's :class:`Scrubber`: a hostile or broken server may echo what it was sent. The forms covered
are those a password takes on the wire: as typed, IMAP-quoted, and base64 as in AUTH PLAIN and AUTH
LOGIN. The runner redacts again as a last line of defence; checks do not rely on it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

from inboxcheck._models import Account

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
