"""The receiving half of the send test: find the message over IMAP (``send.find``), then delete it
(``send.cleanup``).

Both log in the way ``imap.login`` does, over the same code (:class:`_ImapLogin`, its aioimaplib
protocol subclass with the secret handling and the bounds); what they add runs after LOGIN.

Finding: INBOX, then the Junk folder (the one LIST marks ``\\Junk``, RFC 6154, else a usual name),
are searched by the token header until ``--send-timeout``. Between searches the check waits in IDLE
on INBOX (RFC 2177) where the server offers it, so a message that arrives is seen at once; without
IDLE it polls, waiting longer each time. A message filed in Junk raises no IDLE event in INBOX: each
IDLE wait is bounded, and both folders are searched again after it.

Cleaning up: the message is flagged ``\\Deleted`` where it landed and in the ``\\Sent`` folder when
the server put a copy there, and expunged by UID (UIDPLUS, RFC 4315) so nothing else the user
flagged is expunged with it. Without UIDPLUS the message is left flagged, and the check says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from aioimaplib import aioimaplib

from inboxcheck._check import LEFTOVER_BOUND, CheckContext, Outcome
from inboxcheck._models import Finding, Severity, finding
from inboxcheck.checks.login.imap import _ImapLogin
from inboxcheck.checks.login.imap_protocol import _lines, _PeerFailed, _Protocol
from inboxcheck.checks.login.probe import transport_session
from inboxcheck.checks.send.message import TOKEN_HEADER, TestMessage
from inboxcheck.checks.send.smtp import SENT_FACT, Sent

__all__ = [
    "CLEANUP",
    "LANDING_FACT",
    "Folders",
    "Landing",
    "check_send_cleanup",
    "check_send_find",
    "leave_for_cleanup",
    "parse_list",
]

LANDING_FACT: Final = "send.landing"
#: Names providers give the spam folder when the server does not mark it ``\Junk``.
JUNK_NAMES: Final = (
    "Junk",
    "Spam",
    "Junk E-mail",
    "Junk Email",
    "[Gmail]/Spam",
    "Bulk Mail",
    "INBOX.Junk",
    "INBOX.Spam",
)
SENT_NAMES: Final = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "INBOX.Sent")
#: The largest test message read back: ours is under 2 KB, with the receiver's headers a few more.
MAX_MESSAGE: Final = 256 * 1024
#: The folders searched for a message not yet found, when a run cut short deletes it on the way out.
_MAX_FOLDERS_SEARCHED: Final = 20
_FIRST_WAIT: Final = 0.5
_LONGEST_WAIT: Final = 10.0

_LIST_LINE: Final = re.compile(
    r'^(?:\*\s+)?(?:LIST\s+)?\((?P<flags>[^)]*)\)\s+(?:"(?:[^"\\]|\\.)*"|NIL)\s+(?P<name>.+?)\s*$',
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Folders:
    """The folders of the mailbox the send test cares about."""

    junk: str | None
    sent: str | None
    junk_by: Literal["special-use", "name", "none"] = "none"
    #: Every folder that can be selected, in LIST order (where a message not yet found may be).
    selectable: tuple[str, ...] = ()


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def parse_list(lines: list[str]) -> Folders:
    """The Junk and Sent folders named in a LIST response: special-use flags first, then names."""
    names: dict[str, set[str]] = {}
    for line in lines:
        match = _LIST_LINE.match(line)
        if match:
            names[_unquote(match["name"])] = {flag.lower() for flag in match["flags"].split()}
    lowered = {name.lower(): name for name in names}

    def pick(flag: str, usual: tuple[str, ...]) -> tuple[str | None, Literal["special-use", "name", "none"]]:
        for name, flags in names.items():
            if flag in flags and "\\noselect" not in flags:
                return name, "special-use"
        for candidate in usual:
            if candidate.lower() in lowered:
                return lowered[candidate.lower()], "name"
        return None, "none"

    junk, junk_by = pick("\\junk", JUNK_NAMES)
    sent, _ = pick("\\sent", SENT_NAMES)
    selectable = tuple(name for name, flags in names.items() if "\\noselect" not in flags)
    return Folders(junk=junk, sent=sent, junk_by=junk_by, selectable=selectable)


def parse_search(lines: list[str]) -> list[int]:
    """The numbers of a SEARCH response: its untagged lines (``* SEARCH 1 2``, which aioimaplib hands
    over as ``1 2``), not the tagged status text after them."""
    found: list[int] = []
    for line in lines[:-1]:
        words = line.split()
        if words and words[0].upper() == "SEARCH":
            words = words[1:]
        if all(word.isdigit() for word in words):
            found.extend(int(word) for word in words)
    return found


@dataclass(frozen=True)
class Landing:
    """Where the test message was found, how long it took, and its bytes as they arrived."""

    folder: str
    junk: bool
    uid: int
    seconds: float
    raw: bytes | None
    method: Literal["idle", "poll"]


class _ImapSend(_ImapLogin):
    """The IMAP login, then the search (``find``) or the deletion (``cleanup``)."""

    def __init__(self, ctx: CheckContext, job: Literal["find", "cleanup"], sent: Sent) -> None:
        super().__init__(ctx)
        self.job = job
        self.sent = sent
        self.token = sent.message.token
        self.landing: Landing | None = None
        self.folders = Folders(junk=None, sent=None)
        self.deleted: list[dict[str, Any]] = []

    def take_session(self, transport: asyncio.BaseTransport | None) -> None:
        self.session = transport_session(transport)

    def _record_fact(self) -> None:
        """The login check records the login; this one only uses it."""

    async def _after_login(self, proto: _Protocol) -> bool:
        # Servers announce more (IDLE, UIDPLUS) once logged in.
        self._stage = "capability"
        await self.wait(proto.capability(), "capability")
        self._stage = "list"
        response = await self.wait(proto.simple_command("LIST", '""', '"*"'), "list")
        self.folders = parse_list(_lines(response)) if response.result == "OK" else self.folders
        self.out.details["junk_folder"] = self.folders.junk
        self.out.details["sent_folder"] = self.folders.sent
        if self.job == "find":
            return await self._find(proto)
        return await self._cleanup(proto)

    async def _enter(self, proto: _Protocol, folder: str, *, writable: bool = False) -> bool:
        self._stage = "select" if writable else "examine"
        command = "SELECT" if writable else "EXAMINE"
        if writable:
            response = await self.wait(proto.select(aioimaplib.quoted(folder)), "select")
        else:
            response = await self.wait(proto.simple_command(command, aioimaplib.quoted(folder)), "examine")
            if response.result == "OK":
                proto.state = aioimaplib.SELECTED
        return bool(response.result == "OK")

    async def _search(self, proto: _Protocol, folder: str) -> list[int]:
        if not await self._enter(proto, folder):
            return []
        self._stage = "search"
        response = await self.wait(
            proto.search("HEADER", TOKEN_HEADER, self.token, charset=None, by_uid=True), "search"
        )
        return parse_search(_lines(response)) if response.result == "OK" else []

    # --- find --------------------------------------------------------------------------------

    async def _find(self, proto: _Protocol) -> bool:
        # INBOX last, so that it is the folder selected when the check waits in IDLE: a message
        # delivered after its search is then announced (EXISTS) by the IDLE that follows at once.
        folders = [*([self.folders.junk] if self.folders.junk else []), "INBOX"]
        deadline = self.sent.at + self.ctx.options.send_timeout
        idle = "IDLE" in {c.upper() for c in proto.capabilities}
        self.out.details["waited_with"] = "idle" if idle else "poll"
        wait = _FIRST_WAIT
        while True:
            for folder in folders:
                uids = await self._search(proto, folder)
                if uids:
                    seconds = max(0.0, self.ctx.clock() - self.sent.at)
                    raw = await self._fetch(proto, uids[0])
                    self.landing = Landing(
                        folder=folder,
                        junk=folder != "INBOX",
                        uid=uids[0],
                        seconds=round(seconds, 3),
                        raw=raw,
                        method="idle" if idle else "poll",
                    )
                    return True
            left = min(deadline - self.ctx.clock(), self.ctx.remaining() - self.ctx.options.timeout)
            if left <= 0:
                return True
            pause = min(wait, left)
            if idle:
                idle = await self._idle(proto, pause)
            else:
                await asyncio.sleep(pause)
            wait = min(wait * 2, _LONGEST_WAIT)

    async def _idle(self, proto: _Protocol, seconds: float) -> bool:
        """Wait in IDLE for news in INBOX, at most ``seconds``; False when the server refused IDLE."""
        self._stage = "idle"
        task = asyncio.ensure_future(proto.idle())
        ack = asyncio.ensure_future(proto.wait_for_idle_response())
        push = asyncio.ensure_future(proto.idle_queue.get())
        try:
            await self.wait(asyncio.wait({task, ack}, return_when=asyncio.FIRST_COMPLETED), "idle")
            if task.done():
                # Refused (a tagged NO or BAD, or not allowed in this state): poll instead.
                with contextlib.suppress(Exception):
                    task.result()
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait({push, proto.failed}, return_when=asyncio.FIRST_COMPLETED), seconds
                )
            if proto.failed.done():
                raise _PeerFailed(proto.failed.result())
            proto.idle_done()
            await self.wait(task, "idle")
            # Pushes left in the queue belong to this IDLE; the next one starts clean.
            while not proto.idle_queue.empty():
                proto.idle_queue.get_nowait()
            return True
        finally:
            for future in (task, ack, push):
                if not future.done():
                    future.cancel()

    async def _fetch(self, proto: _Protocol, uid: int) -> bytes | None:
        self._stage = "fetch"
        response = await self.wait(proto.fetch(str(uid), "(BODY.PEEK[])", by_uid=True), "fetch")
        if response.result != "OK":
            return None
        for line in getattr(response, "lines", []) or []:
            if isinstance(line, bytearray) and len(line) <= MAX_MESSAGE:
                return bytes(line)
        return None

    # --- cleanup -----------------------------------------------------------------------------

    async def _cleanup(self, proto: _Protocol) -> bool:
        landing = self.ctx.facts.get(LANDING_FACT)
        # Not found yet (a run cut short while it searched, or a rule filed it away): INBOX, the
        # spam folder, then every other folder, up to a bound.
        unfound = ["INBOX", *([self.folders.junk] if self.folders.junk else []), *self.folders.selectable]
        unfound = list(dict.fromkeys(f for f in unfound if f != self.folders.sent))[:_MAX_FOLDERS_SEARCHED]
        folders = [landing.folder] if isinstance(landing, Landing) else unfound
        if self.folders.sent and self.folders.sent not in folders:
            folders.append(self.folders.sent)
        uidplus = "UIDPLUS" in {c.upper() for c in proto.capabilities}
        for folder in folders:
            uids = await self._search(proto, folder)
            if not uids or not await self._enter(proto, folder, writable=True):
                continue
            uid_set = ",".join(str(uid) for uid in uids)
            self._stage = "store"
            stored = await self.wait(
                proto.store(uid_set, "+FLAGS.SILENT", "(\\Deleted)", by_uid=True), "store"
            )
            expunged = False
            if stored.result == "OK" and uidplus:
                self._stage = "expunge"
                response = await self.wait(proto.expunge(uid_set, by_uid=True), "expunge")
                expunged = response.result == "OK"
            self.deleted.append(
                {
                    "folder": folder,
                    "messages": len(uids),
                    "flagged": stored.result == "OK",
                    "expunged": expunged,
                }
            )
        return True


def _sent(ctx: CheckContext) -> Sent | None:
    sent = ctx.facts.get(SENT_FACT)
    return sent if isinstance(sent, Sent) else None


def _searchable(ctx: CheckContext, sent: Sent) -> str | None:
    """Why no IMAP login can show the message, or None when one can."""
    recipient = sent.message.recipient.lower()
    other = ctx.options.send_to_account
    if other is not None and recipient == other.email_address.lower():
        return None
    if recipient != ctx.account.email_address.lower():
        return (
            f"not searched: the message went to {sent.message.recipient}, and inboxcheck has no IMAP "
            "login for it (give that mailbox's payload with --to-account)"
        )
    if "imap" not in ctx.logins:
        return "not searched: no IMAP login worked in this run (it failed, or IMAP was skipped)"
    return None


async def _probe(ctx: CheckContext, job: Literal["find", "cleanup"], sent: Sent) -> tuple[Outcome, _ImapSend]:
    """Run ``job`` in the mailbox the message went to: the account's own, or --to-account's."""
    other = ctx.options.send_to_account
    if other is None or sent.message.recipient.lower() != other.email_address.lower():
        probe = _ImapSend(ctx, job, sent)
        return await probe.run(), probe
    # The recipient's mailbox: its own login, sharing this run's DNS client, TLS context, clock,
    # deadline and facts; what it starts is stopped here, since the runner does not know it.
    mailbox = ctx.for_variant(other)
    mailbox.started = ctx.started
    mailbox.facts = ctx.facts
    try:
        probe = _ImapSend(mailbox, job, sent)
        return await probe.run(), probe
    finally:
        await mailbox.stop_started()


async def check_send_find(ctx: CheckContext) -> Outcome:
    """Look for the test message in INBOX and in Junk until ``--send-timeout``."""
    await ctx.result_of("imap.login")
    sent = _sent(ctx)
    if sent is None:
        return Outcome.skip("not searched: no test message was sent")
    reason = _searchable(ctx, sent)
    if reason is not None:
        return Outcome.skip(reason)
    out, probe = await _probe(ctx, "find", sent)
    landing = probe.landing
    timeout = ctx.options.send_timeout
    if landing is not None:
        ctx.facts[LANDING_FACT] = landing
        out.details.update(folder=landing.folder, seconds=landing.seconds, junk=landing.junk)
        if landing.junk:
            out.add(
                "send.find.junk",
                Severity.FAIL,
                f"The test message landed in the spam folder ({landing.folder}) after {landing.seconds:g} s, "
                "not in INBOX: the provider's filter distrusts mail from this mailbox.",
                fix="Look at send.verify: unsigned or unaligned mail (DKIM, SPF, DMARC) is the usual cause; "
                "publish the records it names, then move the message out of spam and send again.",
                folder=landing.folder,
                seconds=landing.seconds,
                found_by=probe.folders.junk_by,
            )
            out.summary = f"landed in {landing.folder} (spam) after {landing.seconds:g} s"
        else:
            out.summary = f"landed in INBOX after {landing.seconds:g} s"
    elif not out.findings:
        out.add(
            "send.find.timeout",
            Severity.ERROR,
            f"The test message was not in INBOX or the spam folder within {timeout:g} s, so inboxcheck "
            "could not tell where it went (it may be delayed, quarantined or filed elsewhere by a rule).",
            fix="Look for the message in the mailbox (subject 'inboxcheck test message'); check the "
            "provider's quarantine, then run again with a longer --send-timeout.",
            timeout_s=timeout,
            searched=["INBOX", *([probe.folders.junk] if probe.folders.junk else [])],
        )
        out.summary = f"not found within {timeout:g} s"
    return out


_log = logging.getLogger("inboxcheck.send")
#: The key of the test message's deletion in :attr:`CheckContext.leftovers`: the cleanup check's name.
CLEANUP: Final = "send.cleanup"


def leave_for_cleanup(ctx: CheckContext, message: TestMessage) -> None:
    """Called before the message goes out: should the run end before ``send.cleanup`` has run
    (Ctrl-C, SIGTERM, a cancelled call, the deadline), the runner deletes it on the way out, or
    says where it is."""
    if ctx.options.keep_test_message or message.recipient.lower() not in _mailboxes(ctx):
        return
    ctx.leftovers[CLEANUP] = lambda: _delete_on_the_way_out(ctx, message)


def _mailboxes(ctx: CheckContext) -> set[str]:
    """The mailboxes this run has an IMAP login for: the account's, and --to-account's."""
    other = ctx.options.send_to_account
    return {ctx.account.email_address.lower(), *([other.email_address.lower()] if other else [])}


async def _delete_on_the_way_out(ctx: CheckContext, message: TestMessage) -> Finding | None:
    """Delete the test message within :data:`LEFTOVER_BOUND` (a context of its own: the run's
    deadline may have passed); the finding of where it was left when that did not work."""
    sent = _sent(ctx) or Sent(message, ctx.clock(), "")
    budget = ctx.options.model_copy(
        update={"deadline": LEFTOVER_BOUND, "timeout": min(ctx.options.timeout, LEFTOVER_BOUND)}
    )
    tidy = CheckContext.for_account(
        ctx.account,
        options=budget,
        presets=ctx.presets,
        ssl_context=ctx.ssl_context,
        dns_client=ctx.dns,
        clock=ctx.clock,
        now=ctx.now,
    )
    tidy.facts = ctx.facts
    tidy.logins = ctx.logins
    deleted = False
    try:
        async with asyncio.timeout(LEFTOVER_BOUND):
            _out, probe = await _probe(tidy, "cleanup", sent)
        deleted = any(d["flagged"] for d in probe.deleted)
    except Exception:  # noqa: BLE001 - whatever stopped it, the message's place is told below
        _log.debug("deleting the test message on the way out failed", exc_info=True)
    finally:
        if not deleted:
            left = _left_behind(ctx, message)
            _log.warning("inboxcheck: %s %s", left.message, left.fix)
        await tidy.stop_started()
    if deleted:
        _log.info("the run ended early: the test message %s was deleted on the way out", message.token)
        return None
    return left


def _left_behind(ctx: CheckContext, message: TestMessage) -> Finding:
    landing = ctx.facts.get(LANDING_FACT)
    where = landing.folder if isinstance(landing, Landing) else "INBOX (or the spam folder)"
    return finding(
        "send.cleanup.left_behind",
        Severity.WARN,
        f"The run ended before the test message could be deleted: it is in {where} of "
        f"{message.recipient}, subject 'inboxcheck test message {message.token}', header "
        f"{TOKEN_HEADER}: {message.token}.",
        fix="Delete that message by hand (search the mailbox for the token).",
        recipient=message.recipient,
        folder=where,
        token=message.token,
        message_id=message.message_id,
    )


async def check_send_cleanup(ctx: CheckContext) -> Outcome:
    """Delete the test message where it landed, and its copy in Sent."""
    out = await _cleanup_now(ctx)
    ctx.leftovers.pop(CLEANUP, None)  # it ran: what it did not delete, its own findings say
    return out


async def _cleanup_now(ctx: CheckContext) -> Outcome:
    await ctx.result_of("send.find")
    if ctx.options.keep_test_message:
        return Outcome.skip("kept: --keep-test-message was given")
    sent = _sent(ctx)
    if sent is None or not isinstance(ctx.facts.get(LANDING_FACT), Landing):
        return Outcome.skip("nothing to delete: the test message was not sent, or not found")
    out, probe = await _probe(ctx, "cleanup", sent)
    out.details["deleted"] = list(probe.deleted)
    flagged_only = [d["folder"] for d in probe.deleted if d["flagged"] and not d["expunged"]]
    failed = [d["folder"] for d in probe.deleted if not d["flagged"]]
    if failed:
        out.add(
            "send.cleanup.failed",
            Severity.WARN,
            f"The server would not delete the test message in {', '.join(failed)}.",
            fix="Delete the message (subject 'inboxcheck test message') by hand.",
            folders=list(failed),
        )
    if flagged_only:
        out.add(
            "send.cleanup.flagged_only",
            Severity.INFO,
            f"The test message in {', '.join(flagged_only)} is flagged deleted but not expunged: the "
            "server has no UIDPLUS, and a plain EXPUNGE would also remove other messages flagged deleted.",
            fix="It disappears when the mail client next expunges (compacts) the folder.",
            folders=list(flagged_only),
        )
    if not out.summary.startswith("could not"):
        where = ", ".join(d["folder"] for d in probe.deleted) or "nowhere (already gone)"
        out.summary = f"deleted the test message from {where}"
    return out
