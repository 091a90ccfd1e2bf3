"""One endpoint (protocol, host, port, TLS mode), and the one rule for what the payload's TLS flags mean.

The platform's payload says TLS with one flag per protocol, so a port and a flag together name a TLS
mode (:meth:`Endpoint.from_payload`), and only some endpoints can be written back
(:func:`expressible`, :meth:`Endpoint.payload_fields`):

- ``smtp_use_tls`` true is implicit TLS on port 465 and STARTTLS on any other port; false is no TLS.
- ``imap_use_ssl`` true is implicit TLS; false is STARTTLS (clear text only if the server offers no
  STARTTLS and the user allowed it), on any port.

Everything that names a server the account, a preset, a discovery source or diagnose may try
(:class:`inboxcheck.discovery.model.Candidate`, :class:`inboxcheck._diagnose.Alternative`, the login
facts) is or holds an :class:`Endpoint`. This module imports nothing from the package.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SMTP_IMPLICIT_PORT",
    "STANDARD_PORTS",
    "Endpoint",
    "MailProtocol",
    "TlsMode",
    "expressible",
    "host_port",
    "tls_setting",
]

#: The one SMTP port where ``smtp_use_tls`` means implicit TLS (RFC 8314 section 3.3).
SMTP_IMPLICIT_PORT: Final = 465


class MailProtocol(StrEnum):
    SMTP = "smtp"
    IMAP = "imap"


class TlsMode(StrEnum):
    """How a connection is encrypted."""

    IMPLICIT = "implicit"  # TLS from the first byte (SMTP 465, IMAP 993)
    STARTTLS = "starttls"  # plain connect, then upgrade (SMTP 587, IMAP 143)
    NONE = "none"


#: The standard ports of each protocol, implicit TLS first (RFC 8314 section 3; RFC 6409 for 587).
STANDARD_PORTS: Final[dict[MailProtocol, tuple[tuple[int, TlsMode], ...]]] = {
    MailProtocol.SMTP: ((SMTP_IMPLICIT_PORT, TlsMode.IMPLICIT), (587, TlsMode.STARTTLS)),
    MailProtocol.IMAP: ((993, TlsMode.IMPLICIT), (143, TlsMode.STARTTLS)),
}

_SETTING: Final = {MailProtocol.SMTP: "smtp_use_tls", MailProtocol.IMAP: "imap_use_ssl"}


def tls_setting(protocol: MailProtocol | str) -> str:
    """The payload's TLS field for ``protocol``: ``smtp_use_tls`` or ``imap_use_ssl``."""
    return _SETTING[MailProtocol(protocol)]


def host_port(host: str, port: int) -> str:
    """``host:port`` for people, an IPv6 address in brackets (RFC 3986): "::1:25" is ambiguous."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def expressible(protocol: MailProtocol | str, port: int, tls: TlsMode) -> str | None:
    """Why the platform's payload cannot say this endpoint, or None when it can.

    ``smtp_use_tls`` true means implicit TLS on 465 and STARTTLS on any other port, so implicit TLS
    elsewhere (and STARTTLS on 465) cannot be written down. ``imap_use_ssl`` true is implicit TLS,
    false is STARTTLS, on any port. A connection without TLS is never chosen: no password goes over it.
    """
    if tls is TlsMode.NONE:
        return "it has no encryption, and a password is never sent in clear text"
    if MailProtocol(protocol) is MailProtocol.SMTP:
        if tls is TlsMode.IMPLICIT and port != SMTP_IMPLICIT_PORT:
            return (
                f"the payload can say implicit TLS for SMTP only on port {SMTP_IMPLICIT_PORT} "
                f"(smtp_use_tls on any other port means STARTTLS), and this is port {port}"
            )
        if tls is TlsMode.STARTTLS and port == SMTP_IMPLICIT_PORT:
            return f"the payload's smtp_use_tls on port {SMTP_IMPLICIT_PORT} means implicit TLS, not STARTTLS"
    return None


class Endpoint(BaseModel):
    """One server to connect to: a protocol's host, port and TLS mode. The host is kept as given;
    :attr:`key` is the form to compare by."""

    model_config = ConfigDict(frozen=True)

    protocol: MailProtocol
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TlsMode

    @classmethod
    def from_payload(cls, protocol: MailProtocol | str, host: str, port: int, flag: bool) -> Endpoint:
        """The endpoint the payload's host, port and TLS flag name (the module's rule)."""
        protocol = MailProtocol(protocol)
        if protocol is MailProtocol.IMAP:
            tls = TlsMode.IMPLICIT if flag else TlsMode.STARTTLS
        elif not flag:
            tls = TlsMode.NONE
        else:
            tls = TlsMode.IMPLICIT if port == SMTP_IMPLICIT_PORT else TlsMode.STARTTLS
        return cls(protocol=protocol, host=host, port=port, tls=tls)

    @property
    def key(self) -> tuple[str, str, int, str]:
        """What makes two endpoints the same: case, brackets and a final dot do not count."""
        host = self.host.strip().strip("[]").lower().rstrip(".")
        return (self.protocol.value, host, self.port, self.tls.value)

    @property
    def where(self) -> str:
        return f"{host_port(self.host, self.port)} ({self.tls.value})"

    def __str__(self) -> str:
        return self.where

    def same(self, other: Endpoint | None) -> bool:
        return other is not None and self.key == other.key

    def tls_flag(self) -> bool:
        """The payload's ``smtp_use_tls`` / ``imap_use_ssl`` value for this endpoint (when expressible)."""
        if self.protocol is MailProtocol.SMTP:
            return self.tls is not TlsMode.NONE
        return self.tls is TlsMode.IMPLICIT

    def unexpressible(self) -> str | None:
        """Why the payload cannot say this endpoint, or None when it can."""
        return expressible(self.protocol, self.port, self.tls)

    def payload_fields(self) -> dict[str, str | int | bool]:
        """The payload's host, port and TLS fields that name this endpoint."""
        prefix = self.protocol.value
        return {
            f"{prefix}_host": self.host,
            f"{prefix}_port": self.port,
            tls_setting(prefix): self.tls_flag(),
        }


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine by its spelling alone: a loopback address (127.0.0.0/8, ::1,
    bracketed or not) or ``localhost``. No lookup: a name that merely resolves to loopback is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
