"""What a login sends: a username and a secret, and every form the secret takes on the wire.

A :class:`Credential` is what the login checks send and what the scrubber hides. The secret is a
password (:attr:`CredentialKind.PASSWORD`: AUTH PLAIN/LOGIN, IMAP LOGIN) or an OAuth2 access token
(:attr:`CredentialKind.OAUTH2`: SASL XOAUTH2, Google's and Microsoft's, and OAUTHBEARER, RFC 7628).
Every encoding is made here, and :meth:`Credential.wire_forms` lists each for the scrubber.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import SecretStr

__all__ = ["Credential", "CredentialKind", "imap_quoted"]


class CredentialKind(StrEnum):
    PASSWORD = "password"
    OAUTH2 = "oauth2"


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8", "surrogatepass")).decode("ascii")


def _gs2_name(value: str) -> str:
    """A SASL name in a GS2 header (RFC 5801 section 4): ``,`` and ``=`` escaped."""
    return value.replace("=", "=3D").replace(",", "=2C")


def imap_quoted(value: str) -> str:
    """``value`` as an IMAP quoted string (RFC 3501 section 4.3), quotes included."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Credential:
    """A username and its secret. The secret shows in no repr, str or comparison output."""

    username: str
    secret: SecretStr = field(repr=False)
    kind: CredentialKind = CredentialKind.PASSWORD

    @classmethod
    def bearer(cls, username: str, token: str) -> Credential:
        """A login with an OAuth2 access token instead of a password."""
        return cls(username, SecretStr(token), CredentialKind.OAUTH2)

    @property
    def is_token(self) -> bool:
        return self.kind is CredentialKind.OAUTH2

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self.secret.get_secret_value()

    def xoauth2_text(self) -> str:
        """The SASL XOAUTH2 initial response before base64: ``user=U^Aauth=Bearer T^A^A``."""
        return f"user={self.username}\x01auth=Bearer {self.reveal()}\x01\x01"

    def xoauth2(self) -> str:
        """The SASL XOAUTH2 initial response, base64 (SMTP ``AUTH XOAUTH2``, IMAP ``AUTHENTICATE``)."""
        return _b64(self.xoauth2_text())

    def oauthbearer_text(self) -> str:
        """The OAUTHBEARER initial response (RFC 7628 section 3.1) before base64: the GS2 header with
        the authorization identity, then the bearer token. Host and port are optional there and left
        out, so the form is the same on every server (and the scrubber knows it)."""
        return f"n,a={_gs2_name(self.username)},\x01auth=Bearer {self.reveal()}\x01\x01"

    def oauthbearer(self) -> str:
        """The OAUTHBEARER initial response, base64."""
        return _b64(self.oauthbearer_text())

    def sasl_plain(self) -> str:
        """The SASL PLAIN initial response (RFC 4616): base64 of ``\\0username\\0secret``."""
        return _b64(f"\0{self.username}\0{self.reveal()}")

    def imap_login_arguments(self) -> tuple[str, str]:
        """The two quoted arguments of IMAP ``LOGIN``."""
        return imap_quoted(self.username), imap_quoted(self.reveal())

    def sendable(self) -> bool:
        """Whether a login line can carry both parts: no CR, LF or NUL (which SASL PLAIN uses as its
        separator, RFC 4616), no ^A in a token's parts (XOAUTH2's separator), and a UTF-8 form."""
        forbidden = "\r\n\0\x01" if self.is_token else "\r\n\0"
        for text in (self.username, self.reveal()):
            if any(char in text for char in forbidden):
                return False
            try:
                text.encode("utf-8")
            except UnicodeError:
                return False
        return True

    def wire_forms(self) -> frozenset[str]:
        """Every form in which the secret crosses an SMTP or IMAP wire, to be scrubbed from replies.

        As typed, inside an IMAP quoted string, base64 alone (AUTH LOGIN), and base64 within the SASL
        PLAIN response, with an empty and with a repeated authorization identity; for a token also
        the XOAUTH2 and OAUTHBEARER responses, as text and base64, and ``Bearer T``.
        """
        secret = self.reveal()
        if not secret:
            return frozenset()
        forms = (
            {
                f"Bearer {secret}",
                self.xoauth2_text(),
                self.xoauth2(),
                self.oauthbearer_text(),
                self.oauthbearer(),
            }
            if self.is_token
            else set()
        )
        forms |= {
            secret,
            imap_quoted(secret)[1:-1],
            _b64(secret),
            self.sasl_plain(),
            _b64(f"{self.username}\0{self.username}\0{secret}"),
        }
        return frozenset(form for form in forms if form)
