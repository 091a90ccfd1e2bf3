"""Options every check honours: timeouts, the DNS servers to ask, extra trust, the mailbox's stage."""

from __future__ import annotations

import ipaddress
import re
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inboxcheck._errors import OptionsError
from inboxcheck._models import Account, Stage

__all__ = ["CheckOptions", "Family", "Nameserver", "parse_nameserver"]

# RFC 5322 3.6.8: printable ASCII but the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_SELECTOR_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")


class Family(StrEnum):
    """The groups of checks, which can be selected or skipped as a whole."""

    ACCOUNT = "account"
    DNS = "dns"
    SMTP = "smtp"
    IMAP = "imap"


class Nameserver(BaseModel):
    """A DNS server to send every lookup to, instead of the system resolver."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 53

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address.

    The host must be an IP address: a name would need a resolver to find the resolver.
    """
    value = text.strip()
    host, port = value, 53
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise OptionsError(f"nameserver {text!r}: missing ']' after the IPv6 address")
        host, rest = value[1:close], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise OptionsError(f"nameserver {text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        port = _port(text, port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise OptionsError(
            f"nameserver {text!r}: {host!r} is not an IP address; give the server's address, "
            "e.g. 127.0.0.1:5353 or [::1]:5353"
        ) from None
    return Nameserver(host=host, port=port)


def _port(text: str, port_text: str) -> int:
    try:
        port = int(port_text)
    except ValueError:
        raise OptionsError(f"nameserver {text!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise OptionsError(f"nameserver {text!r}: port {port} is outside 1-65535")
    return port


class CheckOptions(BaseModel):
    """How a run behaves. Every network step has ``timeout``; the whole run has ``deadline``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    deadline: Annotated[float, Field(gt=0, le=3600)] = 60.0
    nameservers: tuple[Nameserver, ...] = ()
    ca_file: Path | None = None
    stage: Stage = Stage.NEW
    allow_plaintext: bool = False
    dkim_selectors: tuple[str, ...] = ()
    families: frozenset[Family] = frozenset(Family)
    #: Send one real test message and follow it (``--send-test``); never on by default.
    send_test: bool = False
    #: Where the test message goes; None means the account's own address.
    send_to: str | None = None
    #: The mailbox of ``send_to`` (``--to-account``): its IMAP settings find and delete the message
    #: there; its passwords are scrubbed from the report like the account's own.
    send_to_account: Account | None = None
    #: How long to look for the test message over IMAP.
    send_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    keep_test_message: bool = False
    #: Extra headers for the test message (``--test-header``), e.g. to trigger a filter rule.
    test_headers: tuple[tuple[str, str], ...] = ()
    #: The deliverability checks (``--deliverability``): FCrDNS of the SMTP host, and the domain and
    #: the host's addresses against DNS blocklists. The blocklist lookups go to third parties, whose
    #: terms limit free use: opt-in.
    deliverability: bool = False
    #: The lists to ask, as ids from ``blocklists.toml`` or ``[ip:|domain:]ZONE``; empty means the
    #: default lists. Giving any turns ``deliverability`` on.
    blocklist_zones: tuple[str, ...] = ()

    @field_validator("nameservers", mode="before")
    @classmethod
    def _parse_nameservers(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            return tuple(parse_nameserver(item) if isinstance(item, str) else item for item in value)
        return value

    @field_validator("send_to")
    @classmethod
    def _plain_address(cls, value: str | None) -> str | None:
        if value is not None and (
            value.count("@") != 1 or any(c in value for c in "\r\n<> \t\0") or value.startswith("@")
        ):
            raise ValueError(f"send_to {value!r} is not a plain email address (local@domain)")
        return value

    @field_validator("dkim_selectors")
    @classmethod
    def _selector_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # RFC 6376 3.1: a selector is a sub-domain, one or more DNS labels (it is queried at
        # SELECTOR._domainkey.DOMAIN); anything else would be a lookup of a name nobody can publish.
        for selector in value:
            labels = selector.rstrip(".").split(".")
            if not selector or not all(_SELECTOR_LABEL.fullmatch(label) for label in labels):
                raise ValueError(
                    f"DKIM selector {selector!r} is not a DNS name (letters, digits and hyphens, "
                    "dot-separated labels of 1-63 characters, e.g. google or s1.mail)"
                )
        return value

    @field_validator("blocklist_zones")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            return value  # nothing to look up: the blocklists' data is not loaded
        from inboxcheck._blocklists import select_blocklists

        try:
            select_blocklists(value)
        except OptionsError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("test_headers")
    @classmethod
    def _header_lines(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for name, text in value:
            if not _HEADER_NAME.fullmatch(name) or any(c in text for c in "\r\n\0"):
                raise ValueError(f"test header {name!r}: a header is NAME: VALUE on one line")
        return value

    @model_validator(mode="after")
    def _room_for_the_send_test(self) -> CheckOptions:
        # The run's deadline bounds every check: with the send test on and no deadline chosen, leave
        # room for the wait for the message plus the logins around it.
        if self.send_test and "deadline" not in self.model_fields_set:
            object.__setattr__(self, "deadline", min(3600.0, max(self.deadline, self.send_timeout + 60)))
        recipient = self.send_to_account
        if recipient is not None:
            if self.send_to is None:
                object.__setattr__(self, "send_to", recipient.email_address)
            elif self.send_to.lower() != recipient.email_address.lower():
                raise ValueError(
                    f"send_to {self.send_to!r} is not the address of the --to-account mailbox "
                    f"({recipient.email_address})"
                )
        if self.blocklist_zones and not self.deliverability:
            object.__setattr__(self, "deliverability", True)
        return self

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA file {value} does not exist or is not a file")
        if value is not None:
            # Loaded once here, so a file that is no CA fails the run as bad input, not every TLS
            # check as a bug.
            try:
                # A bare client context: the system's CAs (tens of milliseconds to load) are not
                # what is being checked.
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(value))
            except (ssl.SSLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc.__class__.__name__
                message = f"CA file {value} holds no PEM certificate that can be loaded ({reason})"
                raise ValueError(message) from None
        return value
