"""Candidates from the offline sources: a provider's preset, and guesses from the domain's name.
(Service records and autoconfig files, which need the network, live in ``srv`` and ``autoconfig``.)"""

from __future__ import annotations

from typing import Final

from inboxcheck._endpoint import STANDARD_PORTS, TlsMode
from inboxcheck._presets import Preset, UsernameRule
from inboxcheck.discovery.model import Candidate, MailProtocol, SourceKind

__all__ = ["GUESSES", "guess_candidates", "preset_candidates"]

#: Thunderbird's guesses, in the order tried: implicit TLS first (RFC 8314 section 3).
GUESSES: Final[dict[MailProtocol, tuple[tuple[str, int, TlsMode], ...]]] = {
    protocol: tuple((prefix, port, tls) for prefix in (protocol.value, "mail") for port, tls in ports)
    for protocol, ports in STANDARD_PORTS.items()
}


def _username(rule: UsernameRule, address: str) -> str | None:
    if rule is UsernameRule.EMAIL:
        return address
    if rule is UsernameRule.LOCAL_PART:
        return address.partition("@")[0]
    return None


def preset_candidates(preset: Preset, address: str, *, how: str) -> list[Candidate]:
    """The preset's endpoints (the preferred one first), trusted: they are the provider's own."""
    out: list[Candidate] = []
    for protocol, service in ((MailProtocol.SMTP, preset.smtp), (MailProtocol.IMAP, preset.imap)):
        endpoints = sorted(service.endpoints, key=lambda e: not e.preferred)
        for order, endpoint in enumerate(endpoints):
            out.append(
                Candidate(
                    protocol=protocol,
                    host=endpoint.host,
                    port=endpoint.port,
                    tls=endpoint.tls,
                    source=SourceKind.PRESET,
                    sources=(f"preset {preset.id} ({how})",),
                    username=_username(service.username, address),
                    trusted=True,
                    evidence={"order": order, "preset": preset.id},
                )
            )
    return out


def guess_candidates(protocol: MailProtocol, domain: str, address: str) -> list[Candidate]:
    """``smtp.``/``mail.``/``imap.`` + domain on the standard ports."""
    return [
        Candidate(
            protocol=protocol,
            host=f"{prefix}.{domain}",
            port=port,
            tls=tls,
            source=SourceKind.GUESS,
            sources=(f"guess {prefix}.{domain}:{port}",),
            username=address,
            evidence={"order": order},
        )
        for order, (prefix, port, tls) in enumerate(GUESSES[protocol])
    ]
