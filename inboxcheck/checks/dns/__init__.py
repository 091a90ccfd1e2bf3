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
"""

from __future__ import annotations

from typing import Final

from inboxcheck._check import CheckSpec
from inboxcheck._options import CheckOptions, Family
from inboxcheck.checks import deferred
from inboxcheck.checks.dns.dkim import COMMON_DKIM_SELECTORS, check_dkim
from inboxcheck.checks.dns.dmarc import check_dmarc
from inboxcheck.checks.dns.mx import check_mx
from inboxcheck.checks.dns.receivers import check_receivers
from inboxcheck.checks.dns.spf import check_spf, merged_spf_record
from inboxcheck.checks.dns.treewalk import organisational_domain, walk_targets

__all__ = ["CHECKS", "COMMON_DKIM_SELECTORS", "merged_spf_record", "organisational_domain", "walk_targets"]


# Asked for with --deliverability: their code (and the blocklists' data) is loaded only then.
check_fcrdns = deferred("inboxcheck.checks.dns.fcrdns:check_fcrdns")
check_blocklists = deferred("inboxcheck.checks.dns.blocklists:check_blocklists")


def _deliverability(options: CheckOptions) -> bool:
    return options.deliverability


CHECKS: Final = [
    CheckSpec("dns.mx", "MX records", Family.DNS, check_mx),
    CheckSpec("dns.spf", "SPF record", Family.DNS, check_spf),
    CheckSpec("dns.dkim", "DKIM keys", Family.DNS, check_dkim),
    CheckSpec("dns.dmarc", "DMARC policy", Family.DNS, check_dmarc),
    CheckSpec(
        "dns.receivers",
        "Receiver readiness",
        Family.DNS,
        check_receivers,
        needs=("dns.spf", "dns.dkim", "dns.dmarc"),
    ),
    CheckSpec("dns.fcrdns", "Reverse DNS of the SMTP host", Family.DNS, check_fcrdns, wanted=_deliverability),
    CheckSpec("dns.blocklists", "DNS blocklists", Family.DNS, check_blocklists, wanted=_deliverability),
]
