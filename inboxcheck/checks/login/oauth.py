"""What SMTP and IMAP share about logging in with an OAuth2 token (SASL XOAUTH2, OAUTHBEARER).

The encodings themselves are the credential's (:mod:`inboxcheck._credential`); this module holds the
order in which the mechanisms are tried, the answer a client owes a failure challenge, and the reading
of that challenge: Google's (and RFC 7628's) base64 JSON such as
``{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

__all__ = ["TOKEN_MECHANISMS", "TOKEN_REJECTED_FIX", "TokenChallenge", "dummy_response"]

#: XOAUTH2 first (Google and Microsoft document it; Microsoft documents only it), OAUTHBEARER where
#: the server offers it and not XOAUTH2.
TOKEN_MECHANISMS: Final = ("XOAUTH2", "OAUTHBEARER")
TOKEN_REJECTED_FIX: Final = (
    "Get a fresh access token (tokens last about an hour; with --oauth-refresh-token-file inboxcheck "
    "gets one itself), and check that the app was granted the mail scope: Google "
    "https://mail.google.com/, Microsoft https://outlook.office.com/SMTP.Send and "
    "https://outlook.office.com/IMAP.AccessAsUser.All, for this same mailbox."
)
_MAX_FIELD: Final = 200


def dummy_response(mechanism: str) -> str:
    """The client's answer to a failure challenge: XOAUTH2 an empty response (Google's protocol
    page), OAUTHBEARER a single ^A, base64 (RFC 7628 section 3.2.3)."""
    return "AQ==" if mechanism.upper() == "OAUTHBEARER" else ""


@dataclass(frozen=True)
class TokenChallenge:
    """A server's failure challenge, decoded: its status, schemes and scope (each as sent)."""

    status: str | None
    scope: str | None
    schemes: str | None
    raw: str

    @classmethod
    def decode(cls, text: str, scrub: Callable[[str], str]) -> TokenChallenge:
        """Read a challenge (base64 JSON); anything else is kept as its raw text, never an error."""
        raw = scrub(text.strip())[:_MAX_FIELD]
        try:
            decoded = json.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeError, RecursionError):
            return cls(None, None, None, raw)
        if not isinstance(decoded, dict):
            return cls(None, None, None, raw)

        def field(name: str) -> str | None:
            value = decoded.get(name)
            return scrub(str(value))[:_MAX_FIELD] if isinstance(value, str | int) else None

        return cls(field("status"), field("scope"), field("schemes"), raw)

    def reason(self) -> str:
        """What the challenge says, as the end of a sentence."""
        if self.status in ("401", "invalid_token"):
            what = "the token is expired or invalid, or lacks the scope"
            return f": {what}" + (f" {self.scope}" if self.scope else "")
        if self.status in ("400", "invalid_request"):
            return ": the server could not read the token request"
        if self.status in ("403", "insufficient_scope"):
            return ": the token lacks the scope" + (f" {self.scope}" if self.scope else "")
        if self.status is not None:
            return f": the server says status {self.status}"
        return ""

    def evidence(self) -> JsonValue:
        return {"status": self.status, "scope": self.scope, "schemes": self.schemes, "raw": self.raw}
