"""The registry: every check inboxcheck runs, in report order, named in one place."""

from __future__ import annotations

from inboxcheck._check import CheckSpec

__all__ = ["registered_checks"]


def registered_checks() -> list[CheckSpec]:
    """Every check, account lint first, then DNS, SMTP and IMAP.

    Modules are imported here rather than at the top so that ``inboxcheck --version`` and the offline
    checks do not pay for dnspython, aiosmtplib and aioimaplib.
    """
    from inboxcheck.checks import account, dns, send
    from inboxcheck.checks.login import imap, same_mailbox, smtp

    return [*account.CHECKS, *dns.CHECKS, *smtp.CHECKS, *imap.CHECKS, *same_mailbox.CHECKS, *send.CHECKS]
