"""Settings discovery: the SMTP and IMAP settings of an address, from presets, RFC 6186 service
records, Thunderbird autoconfig files and guesses, each tried (see :func:`discover`)."""

from inboxcheck.discovery.model import (
    Candidate,
    CredentialUse,
    Discovery,
    Lookup,
    MailProtocol,
    ProbeResult,
    SourceKind,
)
from inboxcheck.discovery.run import discover, discover_sync

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
