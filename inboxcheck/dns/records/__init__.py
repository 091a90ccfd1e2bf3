"""Pure parsers for the DNS records mail authentication publishes: SPF, DMARC and DKIM keys.

No I/O here: each parser takes the record's text and returns a typed, frozen record, or raises
:class:`RecordSyntaxError` (a ``ValueError``) with the position of the first error. Nothing else
escapes a parser, whatever the text (property-tested on arbitrary input).
"""

from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.dkim import DkimKey, KeyType, parse_dkim
from inboxcheck.dns.records.dmarc import DmarcRecord, parse_dmarc
from inboxcheck.dns.records.spf import Mechanism, Modifier, Qualifier, SpfRecord, parse_spf

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
