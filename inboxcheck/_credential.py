"""What a login sends: a username and a secret, and every form the secret takes on the wire.

A :class:`Credential` is what the login checks send and what the scrubber hides. Today the secret is a
password; an OAuth token (SASL XOAUTH2 / OAUTHBEARER) would be a new :class:`CredentialKind` whose
encodings and wire forms are added here, and the login checks and the scrubber follow without change.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import SecretStr

__all__ = ["Credential", "CredentialKind", "imap_quoted"]


class CredentialKind(StrEnum):
    PASSWORD = "password"


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8", "surrogatepass")).decode("ascii")


def imap_quoted(value: str) -> str:
    """``value`` as an IMAP quoted string (RFC 3501 section 4.3), quotes included."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Credential:
    """A username and its secret. The secret shows in no repr, str or comparison output."""

    username: str
    secret: SecretStr = field(repr=False)
    kind: CredentialKind = CredentialKind.PASSWORD

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self.secret.get_secret_value()

    def sasl_plain(self) -> str:
        """The SASL PLAIN initial response (RFC 4616): base64 of ``\\0username\\0secret``."""
        return _b64(f"\0{self.username}\0{self.reveal()}")

    def imap_login_arguments(self) -> tuple[str, str]:
        """The two quoted arguments of IMAP ``LOGIN``."""
        return imap_quoted(self.username), imap_quoted(self.reveal())

    def sendable(self) -> bool:
        """Whether a login line can carry both parts: no CR, LF or NUL (which SASL PLAIN uses as its
        separator, RFC 4616), and a UTF-8 form."""
        for text in (self.username, self.reveal()):
            if any(char in text for char in "\r\n\0"):
                return False
            try:
                text.encode("utf-8")
            except UnicodeError:
                return False
        return True

    def wire_forms(self) -> frozenset[str]:
        """Every form in which the secret crosses an SMTP or IMAP wire, to be scrubbed from replies.

        As typed, inside an IMAP quoted string, base64 alone (AUTH LOGIN), and base64 within the SASL
        PLAIN response, with an empty and with a repeated authorization identity.
        """
        secret = self.reveal()
        if not secret:
            return frozenset()
        forms = {
            secret,
            imap_quoted(secret)[1:-1],
            _b64(secret),
            self.sasl_plain(),
            _b64(f"{self.username}\0{self.username}\0{secret}"),
        }
        return frozenset(form for form in forms if form)
