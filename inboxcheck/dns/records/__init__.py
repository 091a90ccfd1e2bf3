"""Pure parsers for the DNS records mail authentication publishes: SPF, DMARC and DKIM keys.

No I/O here: each parser takes the record's text and returns a typed, frozen record, or raises
:class:`RecordSyntaxError` (a ``ValueError``) with the position of the first error. Nothing else
escapes a parser, whatever the text (property-tested on arbitrary input).

The names below load on first use, so that the DMARC tree walk (which the login checks share) does
not load the SPF and DKIM parsers with the DMARC one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from inboxcheck.dns.records._common import RecordSyntaxError as RecordSyntaxError
    from inboxcheck.dns.records.dkim import DkimKey as DkimKey, KeyType as KeyType, parse_dkim as parse_dkim
    from inboxcheck.dns.records.dmarc import DmarcRecord as DmarcRecord, parse_dmarc as parse_dmarc
    from inboxcheck.dns.records.spf import (
        Mechanism as Mechanism,
        Modifier as Modifier,
        Qualifier as Qualifier,
        SpfRecord as SpfRecord,
        parse_spf as parse_spf,
    )

__all__ = [
    "DkimKey",
    "DmarcRecord",
    "KeyType",
    "Mechanism",
    "Modifier",
    "Qualifier",
    "RecordSyntaxError",
    "SpfRecord",
    "parse_dkim",
    "parse_dmarc",
    "parse_spf",
]

_MODULES: Final = {
    "RecordSyntaxError": "inboxcheck.dns.records._common",
    **dict.fromkeys(("DkimKey", "KeyType", "parse_dkim"), "inboxcheck.dns.records.dkim"),
    **dict.fromkeys(("DmarcRecord", "parse_dmarc"), "inboxcheck.dns.records.dmarc"),
    **dict.fromkeys(
        ("Mechanism", "Modifier", "Qualifier", "SpfRecord", "parse_spf"), "inboxcheck.dns.records.spf"
    ),
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
