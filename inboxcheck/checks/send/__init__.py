"""The send test (``--send-test``): one real message, sent, found and verified, then deleted.

Never on by default: it sends mail. Each step is its own check, in order: ``send.permission``
(MAIL FROM and RCPT TO, then RSET: refusals before anything is sent), ``send.message`` (the message
itself), ``send.find`` (where it landed over IMAP, and how long it took), ``send.verify`` (DKIM, SPF,
DMARC, ARC on the message as it arrived) and ``send.cleanup`` (deleted unless
``--keep-test-message``). A step that cannot run because an earlier one did not work is skipped.
"""

from __future__ import annotations

from typing import Final

from inboxcheck._check import CheckSpec
from inboxcheck._options import CheckOptions, Family
from inboxcheck.checks import deferred

__all__ = ["CHECKS"]


def _asked(options: CheckOptions) -> bool:
    return options.send_test


# The steps' code is loaded only by a run that asks for the send test.
check_send_permission = deferred("inboxcheck.checks.send.smtp:check_send_permission")
check_send_message = deferred("inboxcheck.checks.send.smtp:check_send_message")
check_send_find = deferred("inboxcheck.checks.send.imap:check_send_find")
check_send_verify = deferred("inboxcheck.checks.send.verify:check_send_verify")
check_send_cleanup = deferred("inboxcheck.checks.send.imap:check_send_cleanup")

# Every step is in the SMTP family: without SMTP there is nothing to find, and --skip smtp
# turns the whole send test off.
CHECKS: Final = [
    CheckSpec(
        "send.permission", "Send permission", Family.SMTP, check_send_permission, ("smtp.login",), _asked
    ),
    CheckSpec(
        "send.message", "Test message sent", Family.SMTP, check_send_message, ("send.permission",), _asked
    ),
    CheckSpec("send.find", "Test message found", Family.SMTP, check_send_find, ("send.message",), _asked),
    CheckSpec(
        "send.verify", "Test message authentication", Family.SMTP, check_send_verify, ("send.find",), _asked
    ),
    CheckSpec(
        "send.cleanup", "Test message deleted", Family.SMTP, check_send_cleanup, ("send.find",), _asked
    ),
]
