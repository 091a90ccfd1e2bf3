"""What discovery finds: candidate endpoints, where each came from, what probing it showed, the
chosen settings, and the answer. One pydantic model per concept serves the API and ``--format json``
(its schema is committed as ``inboxcheck/discovery.schema.json``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from inboxcheck._endpoint import Endpoint, MailProtocol
from inboxcheck._models import Finding, Verdict
from inboxcheck._version import __version__

__all__ = [
    "Candidate",
    "CredentialUse",
    "Discovery",
    "Lookup",
    "LookupOutcome",
    "MailProtocol",
    "ProbeResult",
    "SourceKind",
]


class SourceKind(StrEnum):
    """Where a candidate came from, in the order their word counts (a provider's preset first)."""

    USER = "user"  # fields the user gave in a partial payload
    PRESET = "preset"
    AUTOCONFIG = "autoconfig"
    SRV = "srv"
    GUESS = "guess"


class ProbeResult(StrEnum):
    """What trying one candidate showed."""

    LOGGED_IN = "logged_in"  # the password was accepted
    AUTH_OFFERED = "auth_offered"  # verified TLS and a login offered (no password was tried)
    LOGIN_FAILED = "login_failed"  # the server refused the password
    NO_AUTH = "no_auth"  # it answered, but offers no login (over TLS)
    TLS_FAILED = "tls_failed"  # the certificate or the handshake failed
    NO_TLS = "no_tls"  # no encryption (plain candidate, or STARTTLS not offered)
    NOT_FOUND = "not_found"  # the host name has no address
    UNREACHABLE = "unreachable"  # could not tell: refused, timed out, no route, temporary DNS
    PROTOCOL_ERROR = "protocol_error"  # it answered something that is not this protocol
    NOT_EXPRESSIBLE = "not_expressible"  # the platform's payload cannot say this TLS mode on this port
    NOT_PROBED = "not_probed"  # not tried (probing off, or the deadline came first)

    @property
    def works(self) -> bool:
        return self in (ProbeResult.LOGGED_IN, ProbeResult.AUTH_OFFERED)

    @property
    def could_not_tell(self) -> bool:
        return self in (ProbeResult.UNREACHABLE, ProbeResult.NOT_PROBED)


class CredentialUse(StrEnum):
    """Whether the password went to this endpoint."""

    SENT = "sent"
    WITHHELD = "withheld"  # a password was given, but this host may not receive it
    NOT_GIVEN = "not_given"  # no password was given: nothing to send
    NOT_NEEDED = "not_needed"  # a password was given, but another endpoint already worked


class Candidate(Endpoint):
    """One endpoint a source named, and what became of it."""

    model_config = ConfigDict(frozen=True)

    source: SourceKind = Field(description="The most trusted source that named this endpoint.")
    sources: tuple[str, ...] = Field(default=(), description="Every source that named it, as text.")
    username: str | None = None
    result: ProbeResult = ProbeResult.NOT_PROBED
    reason: str = Field(default="", description="One sentence: what happened, or why it was passed over.")
    trusted: bool = Field(
        default=False, description="Whether a password may go to this host (preset, own or MX domain)."
    )
    credential: CredentialUse = CredentialUse.NOT_GIVEN
    chosen: bool = Field(default=False, description="Whether its settings went into the account.")
    evidence: dict[str, JsonValue] = Field(default_factory=dict)


LookupOutcome = Literal["found", "nothing", "failed", "skipped"]


class Lookup(BaseModel):
    """One question asked of a source (a DNS name, a URL, a preset table) and its answer."""

    model_config = ConfigDict(frozen=True)

    source: SourceKind
    target: str
    outcome: LookupOutcome
    detail: str = ""


DISCOVERY_SCHEMA_VERSION: Final = "1"


class Discovery(BaseModel):
    """Everything ``discover`` found for one address. Serialised as ``discover --format json``.

    ``account`` holds the payload's fields (never a password) when a pair was chosen; ``filled`` says
    where each field came from.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = DISCOVERY_SCHEMA_VERSION
    tool: Literal["inboxcheck"] = "inboxcheck"
    tool_version: str = __version__
    email_address: str
    duration_ms: float = Field(ge=0)
    account: dict[str, JsonValue] | None
    filled: dict[str, str] = Field(default_factory=dict)
    preset: str | None = None
    candidates: tuple[Candidate, ...]
    lookups: tuple[Lookup, ...] = ()
    findings: tuple[Finding, ...]
    verdict: Verdict

    @property
    def exit_code(self) -> int:
        """0 a working pair; 1 nothing works; 3 could not tell."""
        return {Verdict.FAIL: 1, Verdict.ERROR: 3}.get(self.verdict, 0)

    def chosen(self, protocol: MailProtocol) -> Candidate | None:
        """The candidate whose settings went into ``account`` for ``protocol``."""
        return next((c for c in self.candidates if c.protocol is protocol and c.chosen), None)
