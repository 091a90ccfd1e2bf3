"""Settings discovery: the SMTP and IMAP settings of an address, from presets, RFC 6186 service
records, Thunderbird autoconfig files and guesses, each tried (see :func:`discover`).

The names below load on first use, so that a module of this package (``complete``, asked whether a
payload is partial on every check) does not load discovery's sources and probes with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from inboxcheck.discovery.model import (
        Candidate as Candidate,
        CredentialUse as CredentialUse,
        Discovery as Discovery,
        Lookup as Lookup,
        MailProtocol as MailProtocol,
        ProbeResult as ProbeResult,
        SourceKind as SourceKind,
    )
    from inboxcheck.discovery.run import discover as discover, discover_sync as discover_sync

__all__ = [
    "Candidate",
    "CredentialUse",
    "Discovery",
    "Lookup",
    "MailProtocol",
    "ProbeResult",
    "SourceKind",
    "discover",
    "discover_sync",
]

_MODULES: Final = {
    **dict.fromkeys(
        ("Candidate", "CredentialUse", "Discovery", "Lookup", "MailProtocol", "ProbeResult", "SourceKind"),
        "inboxcheck.discovery.model",
    ),
    "discover": "inboxcheck.discovery.run",
    "discover_sync": "inboxcheck.discovery.run",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
