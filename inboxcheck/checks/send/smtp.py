"""The sending half of the send test: permission (MAIL FROM, RCPT TO, RSET) and the message (DATA).

Both log in the way ``smtp.login`` does, over the same code (:class:`_SmtpLogin`); what they add
runs after AUTH. The certificate and TLS findings stay with ``smtp.login``: these checks repeat
none of them. A refusal is explained through the same knowledge base as a login (a provider's rule
first), else by the reply's class: 4yz is temporary, so "could not tell" (``error``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Literal

import aiosmtplib
from pydantic import JsonValue

from inboxcheck._check import SEND_UNKNOWN, CheckContext, Outcome, SentTest
from inboxcheck._models import Severity, Status
from inboxcheck.checks.login.probe import transport_session
from inboxcheck.checks.login.smtp import _SmtpLogin, _Verbatim
from inboxcheck.checks.send.message import TestMessage, compose, new_token

__all__ = ["SENT_FACT", "Sent", "check_send_message", "check_send_permission", "test_message"]

SENT_FACT: Final = "send.sent"
_MESSAGE_FACT: Final = "send.test_message"

_FALLBACK: Final = {
    "mail_from": (
        "send.permission.sender_refused",
        "The server refused {sender} as the sender (MAIL FROM) after the login: this mailbox may "
        "not send as that address.",
        "Send as the address the SMTP username logs in to, or have the provider allow this mailbox "
        "to send as {sender}; the server's reply is in the evidence.",
    ),
    "rcpt_to": (
        "send.permission.recipient_refused",
        "The server refused the recipient {recipient} (RCPT TO) after the login.",
        "Check the recipient address; if the server says relaying is denied, the login does not "
        "allow sending through this server: check the SMTP username and the provider's settings.",
    ),
    "data": (
        "send.message.refused",
        "The server refused the test message at DATA: the account may log in but not send.",
        "Read the server's reply in the evidence: providers refuse at DATA for a sending limit, "
        "suspected spam, or a suspended account; sign in to the mailbox on the web for its notice.",
    ),
}


@dataclass(frozen=True)
class Sent:
    """The test message the server accepted, and when (the run's clock)."""

    message: TestMessage
    at: float
    reply: str


def test_message(ctx: CheckContext) -> TestMessage:
    """The run's test message (made once: every send check and the search share its token)."""
    message = ctx.facts.get(_MESSAGE_FACT)
    if not isinstance(message, TestMessage):
        message = compose(
            ctx.account,
            token=new_token(),
            to=ctx.options.send_to,
            now=ctx.now(),
            headers=ctx.options.test_headers,
        )
        ctx.facts[_MESSAGE_FACT] = message
    return message


class _SmtpSend(_SmtpLogin):
    """The SMTP login, then MAIL FROM and RCPT TO, then RSET (``permission``) or DATA (``message``)."""

    def __init__(self, ctx: CheckContext, stage: Literal["permission", "message"]) -> None:
        super().__init__(ctx)
        self.stage = stage
        self.message = test_message(ctx)
        # A server may echo the message's headers; the token stays out of every reply kept.
        self.scrub = self.scrub.with_secrets(self.message.token)
        self.sent: Sent | None = None

    def take_session(self, transport: asyncio.BaseTransport | None) -> None:
        self.session = transport_session(transport)

    def _record_fact(self) -> None:
        """The login check records the login; this one only uses it."""

    def _refused(self, stage: str, exc: aiosmtplib.SMTPResponseException) -> None:
        self.step(stage, _Verbatim(exc.code, exc.message))
        code, message, fix = _FALLBACK[stage]
        names = {"sender": self.message.sender, "recipient": self.message.recipient}
        self.explain(stage, exc.code, exc.message, (code, message.format(**names), fix.format(**names)))
        self.out.findings[-1] = self.out.findings[-1].model_copy(
            update={"evidence": {**self.out.findings[-1].evidence, "sender": self.message.sender}}
        )

    async def _after_login(self, client: aiosmtplib.SMTP) -> bool:
        for stage in ("mail_from", "rcpt_to"):
            client.timeout = self.ctx.step_timeout()
            try:
                if stage == "mail_from":
                    reply = await client.mail(self.message.sender)
                else:
                    reply = await client.rcpt(self.message.recipient)
            except aiosmtplib.SMTPTimeoutError:
                self.timed_out(stage)
                return False
            except aiosmtplib.SMTPResponseException as exc:
                self._refused(stage, exc)
                return False
            except (aiosmtplib.SMTPException, OSError) as exc:
                self.protocol_error("closed the connection", str(exc), stage=stage, closed=True)
                return False
            self.step(stage, _Verbatim(reply.code, reply.message))
        client.timeout = self.ctx.step_timeout()
        try:
            if self.stage == "permission":
                reply = await client.rset()
                self.step("rset", _Verbatim(reply.code, reply.message))
                return True
            from inboxcheck.checks.send.imap import leave_for_cleanup  # imap.py imports this module

            journal = self.ctx.send_journal
            if journal is not None:
                # On disk before the message can leave: a run killed from here on never sends a
                # second one on its resume.
                message = self.message
                journal.write_ahead(
                    SentTest(message.token, message.message_id, message.recipient, self.ctx.now())
                )
            leave_for_cleanup(self.ctx, self.message)
            reply = await client.data(self.message.data)
        except aiosmtplib.SMTPTimeoutError:
            self.timed_out("rset" if self.stage == "permission" else "data")
            return False
        except aiosmtplib.SMTPResponseException as exc:
            if self.stage == "permission":
                # The sender and recipient were accepted: a server that then refuses RSET has still
                # said what this check asks.
                self.step("rset", _Verbatim(exc.code, exc.message))
                return True
            self._refused("data", exc)
            return False
        except (aiosmtplib.SMTPException, OSError) as exc:
            if self.stage == "permission":
                return True
            # Whether a message cut off during DATA was accepted is unknown: could not tell.
            self.protocol_error("closed the connection during DATA", str(exc), stage="data", closed=True)
            return False
        verbatim = self.scrub(str(_Verbatim(reply.code, reply.message)))
        self.step("data", verbatim)
        self.sent = Sent(self.message, self.ctx.clock(), verbatim)
        return True


async def _converse(
    ctx: CheckContext, stage: Literal["permission", "message"], **details: JsonValue
) -> tuple[_SmtpSend, Outcome]:
    """The SMTP conversation up to ``stage``; its details end with ``details``, sender and recipient."""
    probe = _SmtpSend(ctx, stage)
    out = await probe.run()
    out.details.update(details, sender=probe.message.sender, recipient=probe.message.recipient)
    return probe, out


async def check_send_permission(ctx: CheckContext) -> Outcome:
    """Ask the server whether this mailbox may send as its address to the recipient, sending nothing."""
    if "smtp" not in ctx.logins:
        return Outcome.skip("not tried: the SMTP login did not work in this run")
    probe, out = await _converse(ctx, "permission")
    message = probe.message
    stages = {f.evidence.get("stage") for f in out.findings}
    if not out.findings:
        out.summary = f"the server accepts {message.sender} as sender and {message.recipient} as recipient"
    elif stages & {"mail_from", "rcpt_to", "rset"}:
        refused = any(f.severity is Severity.FAIL for f in out.findings)
        out.summary = (
            "the server refused the sender or the recipient before anything was sent"
            if refused
            else "could not tell whether the server accepts the sender and the recipient"
        )
    return out


def _sent_earlier(earlier: SentTest) -> Outcome:
    """What ``send.message`` says of the message an earlier, interrupted run handed to the server."""
    when = f"at {earlier.sent_at.isoformat(timespec='seconds')}" if earlier.sent_at else "earlier"
    token = earlier.token or "not readable in the damaged log line"
    recipient = earlier.recipient or "the recipient mailbox"
    out = Outcome(summary="not sent: an earlier run sent one and was interrupted before writing its result")
    out.add(
        SEND_UNKNOWN,
        Severity.ERROR,
        f"An earlier run handed a test message to the server {when} and was interrupted before "
        "it recorded the answer: the message may have been delivered. No second one was sent, so "
        "that the mailbox does not get the test twice.",
        fix=f"Look in {recipient} for the inboxcheck test message whose subject ends with its token "
        f"({token}); delete it if it is there. To send a new test message, run again with "
        "--resume --resend-test.",
        token=earlier.token or None,
        message_id=earlier.message_id or None,
        recipient=earlier.recipient or None,
        sent_at=earlier.sent_at.isoformat() if earlier.sent_at else None,
    )
    return out


async def check_send_message(ctx: CheckContext) -> Outcome:
    """Send the one test message over the account's own SMTP settings."""
    if ctx.send_journal is not None and ctx.send_journal.earlier is not None:
        return _sent_earlier(ctx.send_journal.earlier)
    permission = await ctx.result_of("send.permission")
    if permission is None or permission.status in (Status.FAIL, Status.ERROR, Status.SKIPPED):
        return Outcome.skip("not sent: the send permission check did not pass")
    message = test_message(ctx)
    probe, out = await _converse(ctx, "message", token=message.token, message_id=message.message_id)
    if probe.sent is not None:
        ctx.facts[SENT_FACT] = probe.sent
        out.details["size_bytes"] = len(message.data)
        out.summary = f"sent one test message from {message.sender} to {message.recipient}"
    else:
        out.summary = "the test message was not sent"
    return out
