"""Pure rules for discovery: what the platform's payload can express, where a password may go, and
which candidate wins. No I/O: tested exhaustively on their own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import JsonValue

from inboxcheck._endpoint import TlsMode, expressible, tls_setting
from inboxcheck.discovery.model import Candidate, ProbeResult, SourceKind

__all__ = [
    "expressible",
    "merge",
    "payload_fields",
    "rank_key",
    "under",
]

_SOURCE_RANK: Final = {kind: rank for rank, kind in enumerate(SourceKind)}
_RESULT_RANK: Final = {
    ProbeResult.LOGGED_IN: 0,
    ProbeResult.AUTH_OFFERED: 1,
    ProbeResult.NOT_PROBED: 2,
    ProbeResult.UNREACHABLE: 3,
    ProbeResult.LOGIN_FAILED: 4,
    ProbeResult.NO_AUTH: 5,
    ProbeResult.TLS_FAILED: 6,
    ProbeResult.PROTOCOL_ERROR: 7,
    ProbeResult.NO_TLS: 8,
    ProbeResult.NOT_FOUND: 9,
    ProbeResult.NOT_EXPRESSIBLE: 10,
}


def under(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or a name below it."""
    name, parent = host.lower().rstrip("."), domain.lower().rstrip(".")
    return bool(parent) and (name == parent or name.endswith("." + parent))


def rank_key(candidate: Candidate, *, given: Mapping[str, JsonValue] | None = None) -> tuple[int, ...]:
    """Lower is better: expressible, then working, then agreeing with what the user gave, then a host
    a password may go to, then the source (preset first), then implicit TLS (RFC 8314 section 3),
    then the source's own order (kept in ``evidence["order"]``)."""
    mismatches = 0
    if given:
        prefix = candidate.protocol.value
        if given.get(f"{prefix}_host") not in (None, candidate.host):
            mismatches += 1
        if given.get(f"{prefix}_port") not in (None, candidate.port):
            mismatches += 1
        wanted = given.get(tls_setting(candidate.protocol))
        if wanted is not None and wanted != candidate.tls_flag():
            mismatches += 1
    order = candidate.evidence.get("order", 0)
    return (
        0 if candidate.unexpressible() is None else 1,
        _RESULT_RANK[candidate.result],
        mismatches,
        0 if candidate.trusted else 1,
        _SOURCE_RANK[candidate.source],
        # A preset's own order (its preferred endpoint first) is the provider's word; elsewhere RFC 8314.
        0 if candidate.tls is TlsMode.IMPLICIT or candidate.source is SourceKind.PRESET else 1,
        order if isinstance(order, int) else 0,
    )


def merge(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per (protocol, host, port, TLS): the most trusted source leads, every source kept."""
    merged: dict[tuple[str, str, int, str], Candidate] = {}
    for candidate in candidates:
        seen = merged.get(candidate.key)
        if seen is None:
            merged[candidate.key] = candidate
            continue
        best, other = (
            (candidate, seen)
            if _SOURCE_RANK[candidate.source] < _SOURCE_RANK[seen.source]
            else (seen, candidate)
        )
        merged[candidate.key] = best.model_copy(
            update={
                "sources": tuple(dict.fromkeys(best.sources + other.sources)),
                "username": best.username or other.username,
                "trusted": best.trusted or other.trusted,
            }
        )
    return list(merged.values())


def payload_fields(smtp: Candidate, imap: Candidate, *, address: str) -> dict[str, JsonValue]:
    """The payload's host, port, TLS and username fields for a chosen pair."""
    return {
        **smtp.payload_fields(),
        "smtp_username": smtp.username or address,
        **imap.payload_fields(),
        "imap_username": imap.username or address,
    }
