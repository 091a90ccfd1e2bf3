"""The DNS family's checks, in report order (what :func:`inboxcheck.checks.registered_checks` runs).

Kept apart from the package's ``__init__`` so that a module that needs only the lookups or the tree
walk (the IMAP family's same-mailbox check) does not load every DNS check and record parser with it.
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
