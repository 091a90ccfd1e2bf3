"""The data inboxcheck reads and writes: the account payload, findings, check results, the report.

One pydantic model per concept serves the Python API and the JSON output (see ``report.schema.json``).
The account mirrors the platform's create-inbox contract field for field, with the same limits, so an
account that validates here is one the platform accepts.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    field_validator,
)

from inboxcheck._credential import Credential
from inboxcheck._endpoint import Endpoint, MailProtocol, host_port
from inboxcheck._version import __version__

__all__ = [
    "Account",
    "AccountView",
    "CheckResult",
    "DailyLimitRecommendation",
    "Finding",
    "InboxType",
    "PresetRef",
    "RampStep",
    "Report",
    "ServerStr",
    "Severity",
    "Stage",
    "Status",
    "Verdict",
    "finding",
    "host_port",
    "server_text",
    "undecodable_hex",
]


class InboxType(StrEnum):
    """The platform's provider types; each has its own daily limits."""

    GOOGLE_WORKSPACE = "GOOGLE_WORKSPACE"
    OUTLOOK_365 = "OUTLOOK_365"
    CUSTOM_SMTP = "CUSTOM_SMTP"


class Stage(StrEnum):
    """How far the mailbox is in its warm-up; drives the recommended daily limit."""

    NEW = "new"
    WARMING = "warming"
    ESTABLISHED = "established"


class Status(StrEnum):
    """The outcome of one check.

    ``error`` means the check could not tell (a timeout, SERVFAIL, a deadline): it is never a claim that
    something is missing or wrong.
    """

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class Severity(StrEnum):
    """How much one finding matters. ``error`` is "could not tell"."""

    INFO = "info"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"


class Verdict(StrEnum):
    """The overall answer for one account."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"


_STATUS_OF_SEVERITY: Final = {
    Severity.INFO: Status.PASS,
    Severity.WARN: Status.WARN,
    Severity.FAIL: Status.FAIL,
    Severity.ERROR: Status.ERROR,
}
# A failure outranks "could not tell": a run that proved one thing wrong has a definite answer.
_STATUS_RANK: Final = {Status.SKIPPED: 0, Status.PASS: 1, Status.WARN: 2, Status.ERROR: 3, Status.FAIL: 4}

# Deliberately simpler than RFC 5322: the platform stores a mailbox address, and the shapes that matter
# here are "one @, a non-empty local part, a domain with at least one dot and sane labels".
# Dot-atom text, plus any non-ASCII letter (RFC 6531 internationalised addresses).
_LOCAL_PART = re.compile(r"^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]|[^\x00-\x7f\s])+$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)(?:(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.?$"
)


# A lone surrogate: what Python makes of a byte that is not UTF-8 (``surrogateescape``, as aiosmtplib
# decodes replies) or of a ``\\udcfc`` escape in a JSON body. No JSON writer can write one.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def server_text(value: str | bytes) -> str:
    """Text from outside (a server's reply, a body, an exception about it) as it may enter a model:
    bytes decoded as UTF-8 and every byte that is not UTF-8 (or a lone surrogate) replaced by U+FFFD.

    Every model that holds outside text (findings, check results, the platform's replies) passes its
    strings through this, so one Latin-1 byte in a greeting is data in the report, never a crash of
    the JSON writer."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value.isascii() or _SURROGATE.search(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", value)


def undecodable_hex(text: str) -> str | None:
    """The raw bytes of ``text`` as hex when it holds bytes that are not UTF-8 (as decoded with
    ``surrogateescape``), for evidence; None when it is clean text."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return None
    return text.encode("utf-8", "surrogateescape").hex() if _only_escapes(text) else None


def _only_escapes(text: str) -> bool:
    return all("\udc80" <= char <= "\udcff" for char in _SURROGATE.findall(text))


def _clean_json(value: Any) -> Any:
    """:func:`server_text` over every string (keys too) of a JSON value."""
    if isinstance(value, (dict, list)):
        # The common case, every string already clean, told by one pass of the C encoder rather than
        # a walk in Python over every string (a check's details and evidence, for every result).
        try:
            document = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            document = None
        if document is not None and (document.isascii() or _SURROGATE.search(document) is None):
            return value
    return _walk_clean(value)


def _walk_clean(value: Any) -> Any:
    if isinstance(value, str):
        return server_text(value)
    if isinstance(value, dict):
        return {server_text(str(k)): _walk_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_clean(item) for item in value]
    return value


#: A string that may hold outside text: lone surrogates become U+FFFD as it enters the model.
ServerStr = Annotated[str, AfterValidator(server_text)]
_ServerJson = Annotated[dict[str, JsonValue], AfterValidator(_clean_json)]


# Control characters a display name may not hold: C0 (CR, LF, NUL, TAB...), DEL, C1 (NEL) and the
# Unicode line and paragraph separators.
_NAME_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def ascii_domain(name: str) -> str:
    """``name`` as its A-labels, by the IDNA 2008 rules (with UTS 46 mapping) the DNS lookups use.

    Python's own ``idna`` codec is IDNA 2003, which maps ``faß.de`` to ``fass.de`` and accepts
    symbols such as ``☃.com`` that IDNA 2008 forbids: a domain validated by one and looked up by the
    other could pass here and then be a different name, or none, in DNS. Raises UnicodeError (or
    ValueError) when ``name`` is not a valid internationalised name.
    """
    if name.isascii():
        return name
    import dns.name

    try:
        return dns.name.from_text(name, idna_codec=dns.name.IDNA_2008_Practical).to_text(omit_final_dot=True)
    except dns.name.IDNAException as exc:
        raise UnicodeError(str(exc)) from None


def _check_domain(domain: str) -> str | None:
    try:
        ascii_name = ascii_domain(domain)
    except (UnicodeError, ValueError):
        return "its domain is not a valid internationalised name"
    labels = ascii_name.rstrip(".").split(".")
    if len(labels) < 2:
        return "its domain needs at least one dot (e.g. company.com)"
    bad = [label for label in labels if not _DOMAIN_LABEL.match(label)]
    if bad:
        return f"its domain has an invalid label {bad[0]!r}"
    return None


def email_problem(value: str) -> str | None:
    """Why ``value`` is not a usable mailbox address, or None when it is."""
    if value.count("@") != 1:
        return "must contain exactly one @"
    local, domain = value.split("@")
    if not local:
        return "has nothing before the @"
    if len(local.encode()) > 64:
        return "has a local part (before the @) longer than 64 bytes"
    if not _LOCAL_PART.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        return "has a local part (before the @) with characters or dots a mailbox cannot have"
    return _check_domain(domain)


_Name255 = Annotated[str, StringConstraints(min_length=1, max_length=255)]
_Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
_Password = Annotated[SecretStr, Field(min_length=1, max_length=500)]


def _check_host(value: str) -> str:
    if "://" in value:
        raise ValueError("must be a bare host name such as smtp.gmail.com, without a scheme")
    # A bare IPv6 address is full of colons, yet it is a host, not a host and a port.
    if ":" in value and not _is_ip_literal(value):
        raise ValueError("must be a bare host name; put the port in the port field")
    if not _HOSTNAME.match(value) and not _is_ip_literal(value):
        raise ValueError("must be a host name (letters, digits, dots, hyphens) or an IP address")
    return value


def _is_ip_literal(value: str) -> bool:
    import ipaddress

    # Brackets come in a pair around the whole address or not at all ("[1.2.3.4" is no host).
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(inner)
    except ValueError:
        return False
    return True


class Account(BaseModel):
    """One bring-your-own-credentials inbox, exactly as the platform's create call takes it.

    Passwords are :class:`pydantic.SecretStr`: they never show in a repr, a dump or the report. Only
    :meth:`api_payload` reveals them, for the create call itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # Credentials given with with_credentials (an OAuth2 token); none means the payload's passwords.
    _credentials: tuple[Credential | None, Credential | None] = PrivateAttr(default=(None, None))

    email_address: Annotated[str, StringConstraints(min_length=5, max_length=255)]
    display_name: _Name255
    inbox_type: InboxType
    smtp_host: _Name255
    smtp_port: _Port
    smtp_username: _Name255
    smtp_password: _Password
    imap_host: _Name255
    imap_port: _Port
    imap_username: _Name255
    imap_password: _Password
    daily_limit: Annotated[int, Field(ge=1, strict=True)] | None = None
    smtp_use_tls: Annotated[bool, Field(strict=True)] = True
    imap_use_ssl: Annotated[bool, Field(strict=True)] = True

    @field_validator("email_address")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        problem = email_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("smtp_host", "imap_host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        return _check_host(value)

    @field_validator("display_name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # The name goes into the From header of every message: a line break there starts a header
        # of the sender's choosing (RFC 5322 2.2), and other controls are no part of a name.
        bad = _NAME_CONTROL.search(value)
        if bad is not None:
            char = bad.group()
            what = {"\r": "a carriage return (CR)", "\n": "a line break (LF)"}.get(
                char, f"the control character U+{ord(char):04X}"
            )
            raise ValueError(f"holds {what}, which would break the message headers it goes into")
        return value

    @property
    def domain(self) -> str:
        """The sending domain: the part of ``email_address`` after the @, lower-cased."""
        return self.email_address.rsplit("@", 1)[1].lower().rstrip(".")

    @property
    def smtp_credential(self) -> Credential:
        """What SMTP AUTH sends: the password, or the credential given to :meth:`with_credentials`."""
        given = self._credentials[0]
        return Credential(self.smtp_username, self.smtp_password) if given is None else given

    @property
    def imap_credential(self) -> Credential:
        """What IMAP LOGIN or AUTHENTICATE sends."""
        given = self._credentials[1]
        return Credential(self.imap_username, self.imap_password) if given is None else given

    def with_credentials(self, *, smtp: Credential | None = None, imap: Credential | None = None) -> Account:
        """This account, logging in with ``smtp`` / ``imap`` (an OAuth2 token: :meth:`Credential.bearer`).

        The payload's fields stay as they are: a credential replaces a password for the logins, it adds
        no field. Each credential's username must be the payload's.
        """
        for given, username, name in ((smtp, self.smtp_username, "smtp"), (imap, self.imap_username, "imap")):
            if given is not None and given.username != username:
                raise ValueError(f"the {name} credential is for another username than {name}_username")
        copy = self.model_copy()
        copy._credentials = (
            self._credentials[0] if smtp is None else smtp,
            self._credentials[1] if imap is None else imap,
        )
        return copy

    @property
    def uses_tokens(self) -> bool:
        """Whether either login is an OAuth2 token."""
        return self.smtp_credential.is_token or self.imap_credential.is_token

    def endpoint(self, protocol: MailProtocol | Literal["smtp", "imap"]) -> Endpoint:
        """The server the payload names for ``protocol``, its TLS mode by the one rule
        (:meth:`inboxcheck._endpoint.Endpoint.from_payload`)."""
        if MailProtocol(protocol) is MailProtocol.SMTP:
            return Endpoint.from_payload(MailProtocol.SMTP, self.smtp_host, self.smtp_port, self.smtp_use_tls)
        return Endpoint.from_payload(MailProtocol.IMAP, self.imap_host, self.imap_port, self.imap_use_ssl)

    def view(self) -> AccountView:
        """The account without its secrets, as the report shows it."""
        return AccountView.model_validate(self.model_dump(exclude={"smtp_password", "imap_password"}))

    def api_payload(self, *, daily_limit: int | None = None) -> dict[str, Any]:
        """The JSON body of the platform's create call, passwords included. Handle with care."""
        payload = self.model_dump(mode="python", exclude={"smtp_password", "imap_password"})
        payload["smtp_password"] = self.smtp_password.get_secret_value()
        payload["imap_password"] = self.imap_password.get_secret_value()
        if daily_limit is not None:
            payload["daily_limit"] = daily_limit
        if payload["daily_limit"] is None:
            del payload["daily_limit"]
        return {key: (value.value if isinstance(value, StrEnum) else value) for key, value in payload.items()}


class AccountView(BaseModel):
    """An account as shown in a report: every field but the passwords."""

    model_config = ConfigDict(frozen=True)

    email_address: str
    display_name: str
    inbox_type: InboxType
    smtp_host: str
    smtp_port: int
    smtp_username: str
    imap_host: str
    imap_port: int
    imap_username: str
    daily_limit: int | None
    smtp_use_tls: bool
    imap_use_ssl: bool


_CODE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"


class Finding(BaseModel):
    """One thing a check found: a stable code, what it means, how to fix it, and the proof."""

    model_config = ConfigDict(frozen=True)

    code: Annotated[str, Field(pattern=_CODE_PATTERN, description="Stable identifier, e.g. dns.spf.multiple")]
    severity: Severity
    message: ServerStr = Field(description="One sentence a person understands.")
    fix: ServerStr | None = Field(default=None, description="What to do about it, as an action.")
    evidence: _ServerJson = Field(
        default_factory=dict,
        description="What was seen: a server reply, a DNS record, a certificate date.",
    )


class CheckResult(BaseModel):
    """The outcome of one check, with every finding it made."""

    model_config = ConfigDict(frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")]
    title: str
    status: Status
    summary: ServerStr = Field(description="One line: what was checked and what came of it.")
    duration_ms: float = Field(ge=0)
    findings: tuple[Finding, ...] = ()
    details: _ServerJson = Field(default_factory=dict)

    _traceback: str | None = PrivateAttr(default=None)

    @property
    def traceback(self) -> str | None:
        """The traceback of an unexpected exception inside the check (a bug), for ``--debug``."""
        return self._traceback

    @staticmethod
    def status_of(findings: tuple[Finding, ...] | list[Finding]) -> Status:
        """The status implied by the findings: the worst of them, ``pass`` when there are none."""
        status = Status.PASS
        for finding in findings:
            candidate = _STATUS_OF_SEVERITY[finding.severity]
            if _STATUS_RANK[candidate] > _STATUS_RANK[status]:
                status = candidate
        return status


class PresetRef(BaseModel):
    """Which provider preset the account was matched to, and how."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    matched_by: Literal["smtp_host", "imap_host", "mx", "inbox_type"]


class RampStep(BaseModel):
    """One day of a warm-up ramp."""

    model_config = ConfigDict(frozen=True)

    day: int = Field(ge=1)
    daily_limit: int = Field(ge=1)


class DailyLimitRecommendation(BaseModel):
    """The daily sending limit inboxcheck recommends, and why."""

    model_config = ConfigDict(frozen=True)

    value: int = Field(ge=1)
    stage: Stage
    stage_range: tuple[int, int]
    provider_cap: int | None = None
    reasons: tuple[str, ...] = ()
    ramp: tuple[RampStep, ...] = ()
    caveats: tuple[str, ...] = Field(
        default=(),
        description="What the recommendation takes for granted that may stop holding (a password login "
        "the provider is retiring); they change no number.",
    )


REPORT_SCHEMA_VERSION: Final = "1"


class Report(BaseModel):
    """Everything inboxcheck found about one account. Serialised as ``--format json``."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["1"] = REPORT_SCHEMA_VERSION
    tool: Literal["inboxcheck"] = "inboxcheck"
    tool_version: str = __version__
    generated_at: datetime
    duration_ms: float = Field(ge=0)
    account: AccountView
    preset: PresetRef | None
    checks: tuple[CheckResult, ...]
    verdict: Verdict
    counts: dict[Status, int]
    recommended_daily_limit: DailyLimitRecommendation

    @staticmethod
    def verdict_of(checks: tuple[CheckResult, ...] | list[CheckResult]) -> Verdict:
        """fail beats error beats warn beats pass; skipped checks do not count."""
        statuses = {check.status for check in checks}
        for status, verdict in (
            (Status.FAIL, Verdict.FAIL),
            (Status.ERROR, Verdict.ERROR),
            (Status.WARN, Verdict.WARN),
        ):
            if status in statuses:
                return verdict
        return Verdict.PASS

    def findings(self) -> list[Finding]:
        """Every finding of every check, in check order."""
        return [finding for check in self.checks for finding in check.findings]

    def check(self, name: str) -> CheckResult:
        """The result of the check called ``name``; KeyError when it did not run."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    @property
    def exit_code(self) -> int:
        """0 nothing failed, 1 a check failed, 3 nothing failed but some check could not tell."""
        return {Verdict.FAIL: 1, Verdict.ERROR: 3}.get(self.verdict, 0)


def finding(
    code: str, severity: Severity, message: str, *, fix: str | None = None, **evidence: JsonValue
) -> Finding:
    """A finding with its evidence given as keyword arguments."""
    return Finding(code=code, severity=severity, message=message, fix=fix, evidence=evidence)
