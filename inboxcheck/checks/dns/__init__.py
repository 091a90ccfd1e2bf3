"""DNS checks of the sending domain: MX, SPF, DKIM, DMARC, and readiness for the big receivers.

Every lookup goes through the run's :class:`~inboxcheck.dns.client.DnsClient`, so a name asked by two
checks costs one query, and independent lookups run together (``asyncio.gather``): a domain costs
about its slowest chain of lookups, not their sum.

A lookup that times out, or is answered SERVFAIL or REFUSED, proves nothing about the domain: it is
reported as ``dns.unavailable`` (severity ``error``, "could not tell") and never as a missing record.
NXDOMAIN and NODATA are real answers.

Records are parsed by the pure parsers of :mod:`inboxcheck.dns.records`; this module only fetches,
follows (includes, redirects, CNAMEs) and judges.

Choices worth knowing:

- The organisational domain for DMARC is the last two labels (no public suffix list dependency).
- MX hosts that match a provider preset (aspmx.l.google.com, *.mail.protection.outlook.com) are not
  resolved: they are the provider's, and say nothing about this domain's setup.
- DKIM selectors are guessed from a short list only when ``_domainkey.<domain>`` is not NXDOMAIN
  (RFC 8020: nothing exists below a name that does not exist); the preset's selectors and those
  given with ``--dkim-selector`` are always asked.
- SPF lookups are counted statically, as RFC 7208 4.6.4 counts them, over the whole include tree;
  terms with macros are counted but not followed (they need the sender's address).

The names below load on first use (:mod:`inboxcheck.checks.dns.family` holds the checks), so that a
module that needs only ``lookups`` or ``treewalk`` loads neither the other checks nor the parsers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from inboxcheck.checks.dns.family import (
        CHECKS as CHECKS,
        COMMON_DKIM_SELECTORS as COMMON_DKIM_SELECTORS,
        merged_spf_record as merged_spf_record,
        organisational_domain as organisational_domain,
        walk_targets as walk_targets,
    )

__all__ = ["CHECKS", "COMMON_DKIM_SELECTORS", "merged_spf_record", "organisational_domain", "walk_targets"]

_FAMILY: Final = "inboxcheck.checks.dns.family"


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_FAMILY), name)


def __dir__() -> list[str]:
    return sorted(__all__)
