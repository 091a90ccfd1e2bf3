"""The test message: its token, its headers and its bytes. Pure: no I/O.

The token is random and unique to one run; it is what the IMAP search looks for (in a header of its
own and in the subject, so a person who sees the message knows what it is). It reaches the report
once, in the ``token`` detail of ``send.message``, and is scrubbed from every other text.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from typing import Final

from inboxcheck._models import Account

__all__ = ["TOKEN_HEADER", "TestMessage", "compose", "new_token"]

TOKEN_HEADER: Final = "X-Inboxcheck-Token"

_BODY: Final = """\
This message was sent by inboxcheck to prove that this mailbox can send mail and to see where its
mail lands. inboxcheck deletes it once it has been found (unless it was run with
--keep-test-message); if it is still here, it is safe to delete.
"""


def new_token() -> str:
    """A token no other message carries: 80 random bits, letters and digits only (safe to search)."""
    return "ic" + secrets.token_hex(10)


@dataclass(frozen=True)
class TestMessage:
    """One composed test message: who sends it, to whom, and its bytes as they go over SMTP."""

    __test__ = False  # not a pytest class, whatever its name

    token: str
    sender: str
    recipient: str
    message_id: str
    data: bytes


def compose(
    account: Account,
    *,
    token: str,
    to: str | None,
    now: datetime,
    headers: tuple[tuple[str, str], ...] = (),
) -> TestMessage:
    """The message ``account`` sends to itself (or to ``to``), carrying ``token``."""
    sender = account.email_address
    recipient = to or sender
    domain = sender.rpartition("@")[2]
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((account.display_name, sender))
    message["To"] = recipient
    message["Subject"] = f"inboxcheck test message {token}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("inboxcheck", domain=domain)
    message[TOKEN_HEADER] = token
    for name, value in headers:
        message[name] = value
    message.set_content(_BODY)
    return TestMessage(
        token=token,
        sender=sender,
        recipient=recipient,
        message_id=str(message["Message-ID"]),
        data=message.as_bytes(),
    )
