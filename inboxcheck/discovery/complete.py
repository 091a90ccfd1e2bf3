"""Partial payloads: an account with only ``email_address`` (plus whatever the user knows) is
completed by discovery before it is checked or created.

Fields the user gave are never replaced; where discovery found something else, the report says so
(``discover.conflict``). The report's first result, ``account.discovered``, says which fields were
filled and from where.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from pydantic import JsonValue

from inboxcheck._errors import AccountError, FieldProblem
from inboxcheck._models import CheckResult, Finding, Severity, Status, finding
from inboxcheck._options import CheckOptions

if TYPE_CHECKING:
    import ssl

    from inboxcheck._presets import Presets
    from inboxcheck.discovery.model import Discovery
    from inboxcheck.dns.client import DnsClient

__all__ = ["FILLABLE", "Completion", "complete_payload", "is_partial"]

#: The fields discovery can fill.
FILLABLE: Final = (
    "inbox_type",
    "smtp_host",
    "smtp_port",
    "smtp_use_tls",
    "smtp_username",
    "imap_host",
    "imap_port",
    "imap_use_ssl",
    "imap_username",
)
# Without any of these the payload cannot be checked; the TLS flags have defaults, display_name is easy.
_NEEDED: Final = (
    "display_name",
    "inbox_type",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "imap_host",
    "imap_port",
    "imap_username",
)


def is_partial(data: object) -> bool:
    """A payload object with an address and at least one field discovery must fill."""
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("email_address"), str)
        and any(data.get(name) is None for name in _NEEDED if name != "display_name")
    )


@dataclass
class Completion:
    """The completed payload (passwords untouched, as given), and what discovery said."""

    payload: dict[str, Any]
    discovery: Discovery
    filled: dict[str, str] = field(default_factory=dict)
    conflicts: list[Finding] = field(default_factory=list)

    def result(self) -> CheckResult:
        """The report's ``account.discovered`` result."""
        findings: list[Finding] = []
        if self.filled:
            sources: dict[str, JsonValue] = dict(self.filled)
            findings.append(
                finding(
                    "discover.filled",
                    Severity.INFO,
                    f"Filled {', '.join(self.filled)} by discovery; the fields you gave were kept.",
                    filled=sources,
                )
            )
        findings += self.conflicts
        chosen = self.discovery.account or {}
        return CheckResult(
            name="account.discovered",
            title="Settings discovery",
            status=CheckResult.status_of(findings) if findings else Status.PASS,
            summary=f"filled {len(self.filled)} field(s) from discovery (SMTP {chosen.get('smtp_host')}:"
            f"{chosen.get('smtp_port')}, IMAP {chosen.get('imap_host')}:{chosen.get('imap_port')})",
            duration_ms=self.discovery.duration_ms,
            findings=tuple(findings),
            details={"discovery_verdict": self.discovery.verdict.value},
        )


async def complete_payload(
    data: Mapping[str, Any],
    *,
    options: CheckOptions,
    source: str = "account",
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    dns_client: DnsClient | None = None,
    trust_hosts: Iterable[str] = (),
    autoconfig_port: int | None = None,
) -> Completion:
    """Discover the missing fields of ``data``. Probes without a credential: the checks that follow
    log in. Raises :class:`AccountError` when discovery finds no settings to fill them with."""
    from inboxcheck.discovery.run import discover

    address = str(data["email_address"])
    given: dict[str, JsonValue] = {k: data[k] for k in FILLABLE if data.get(k) is not None}
    result = await discover(
        address,
        options=options,
        given=given,
        presets=presets,
        ssl_context=ssl_context,
        dns_client=dns_client,
        trust_hosts=trust_hosts,
        autoconfig_port=autoconfig_port,
    )
    if result.account is None:
        missing = [name for name in _NEEDED if data.get(name) is None]
        codes = ", ".join(f.code for f in result.findings if f.severity is not Severity.INFO)
        raise AccountError(
            source,
            [
                FieldProblem(
                    name,
                    "is missing, and discovery found no working settings to fill it with "
                    f"({codes}); run inboxcheck discover {address} to see what was tried",
                )
                for name in missing
            ],
        )
    payload = dict(data)
    completion = Completion(payload=payload, discovery=result)
    for name, value in result.account.items():
        if name == "email_address":
            continue
        if payload.get(name) is None:
            payload[name] = value
            completion.filled[name] = result.filled.get(name, "discovery")
        elif name in FILLABLE and payload[name] != value:
            completion.conflicts.append(
                finding(
                    "discover.conflict",
                    Severity.WARN,
                    f"You gave {name} = {payload[name]!r}, but discovery chose {value!r} "
                    f"({result.filled.get(name, 'discovery')}); your value was kept.",
                    fix=f"Check {name} against the provider's settings page; inboxcheck discover "
                    f"{address} shows every endpoint tried.",
                    field=name,
                    given=payload[name],
                    discovered=value,
                )
            )
    return completion
