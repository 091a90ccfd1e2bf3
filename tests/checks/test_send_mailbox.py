"""``send.find`` and ``send.cleanup`` against a scripted IMAP mailbox: a server without IDLE (the
check polls), one without UIDPLUS (nothing is expunged but the test message), one that refuses to
delete, and a message that never arrives.

The lab's Dovecot (IDLE, UIDPLUS, SPECIAL-USE) is exercised in ``tests/checks/test_send_lab.py``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Account, Severity
from inboxcheck._options import CheckOptions
from inboxcheck._presets import load_presets
from inboxcheck.checks.send.imap import LANDING_FACT, Landing, check_send_cleanup, check_send_find
from inboxcheck.checks.send.message import compose
from inboxcheck.checks.send.smtp import SENT_FACT, Sent
from tests.peers import PeerCerts, PeerConn
from tests.scenarios import base_payload, peer

MESSAGE = b"From: Sam Peer <sam@peer.test>\r\nSubject: inboxcheck test message\r\n\r\nbody\r\n"


@dataclass
class Mailbox:
    """An IMAP server holding the test message (UID 7) in ``folder`` once ``arrives_after`` seconds
    have passed since it started."""

    capabilities: str = "IMAP4rev1 AUTH=PLAIN"
    folder: str = "INBOX"
    arrives_after: float = 0.0
    store_reply: str = "OK Store completed."
    commands: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    idling: int = 0
    #: The server also filed a copy in Sent (as Gmail and Microsoft do with what is submitted).
    sent_copy: bool = False
    idle_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, conn: PeerConn) -> None:
        await conn.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted mailbox ready\r\n")
        selected = ""
        while line := (await conn.line()).decode():
            self.commands.append(line)
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0].upper()
            words = rest.split(" ")
            if verb == "UID":
                verb = "UID " + words[1].upper()
            if verb == "CAPABILITY":
                reply = f"* CAPABILITY {self.capabilities}\r\n{tag} OK done."
            elif verb == "LOGIN":
                reply = f"{tag} OK Logged in."
            elif verb == "LIST":
                reply = (
                    '* LIST (\\HasNoChildren) "/" INBOX\r\n* LIST (\\HasNoChildren \\Junk) "/" Spam\r\n'
                    f'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n{tag} OK List completed.'
                )
            elif verb in ("EXAMINE", "SELECT"):
                selected = words[1].strip('"')
                reply = f"* 1 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n{tag} OK [READ-WRITE] done."
            elif verb == "UID SEARCH":
                here = (
                    selected == self.folder and time.monotonic() - self.started >= self.arrives_after
                ) or (selected == "Sent" and self.sent_copy)
                reply = f"* SEARCH{' 7' if here else ''}\r\n{tag} OK Search completed."
            elif verb == "UID FETCH":
                reply = (
                    f"* 1 FETCH (UID 7 BODY[] {{{len(MESSAGE)}}}\r\n".encode()
                    + MESSAGE
                    + f")\r\n{tag} OK done.".encode()
                ).decode()
            elif verb == "UID STORE":
                reply = f"{tag} {self.store_reply}"
            elif verb == "UID EXPUNGE":
                reply = f"* 1 EXPUNGE\r\n{tag} OK Expunge completed."
            elif verb == "IDLE":
                await conn.send(b"+ idling\r\n")
                self.idling += 1
                self.idle_started.set()
                if (await conn.line()).upper() != b"DONE":
                    return
                reply = f"{tag} OK Idle completed."
            elif verb == "LOGOUT":
                await conn.send(f"* BYE bye\r\n{tag} OK Logout completed.\r\n".encode())
                return
            else:
                reply = f"{tag} BAD not in this script."
            await conn.send((reply + "\r\n").encode())


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


def _context(port: int, certs: PeerCerts, **options: Any) -> CheckContext:
    account = Account.model_validate(base_payload(imap_port=port))
    ctx = CheckContext(
        account,
        options=CheckOptions(timeout=2.0, send_test=True, **options),
        presets=load_presets(),
        match=None,
        ssl_context=certs.client_context(),
    )
    ctx.logins["imap"] = account.endpoint("imap")
    message = compose(account, token="ic0123456789abcdef0123", to=None, now=datetime.now(UTC))
    ctx.facts[SENT_FACT] = Sent(message, ctx.clock(), "250 2.0.0 Ok")
    return ctx


async def _find(mailbox: Mailbox, certs: PeerCerts, **options: Any) -> tuple[Outcome, CheckContext]:
    async with peer(mailbox, tls=certs.server_context()) as server:
        ctx = _context(server.port, certs, **options)
        return await check_send_find(ctx), ctx


async def _cleanup(mailbox: Mailbox, certs: PeerCerts) -> Outcome:
    async with peer(mailbox, tls=certs.server_context()) as server:
        ctx = _context(server.port, certs)
        ctx.facts[LANDING_FACT] = Landing("INBOX", False, 7, 0.1, MESSAGE, "poll")
        return await check_send_cleanup(ctx)


async def test_without_idle_the_check_polls_until_the_message_arrives(certs: PeerCerts) -> None:
    mailbox = Mailbox(arrives_after=1.2)
    out, ctx = await _find(mailbox, certs)
    assert out.findings == [] and out.details["folder"] == "INBOX", out
    assert out.details["waited_with"] == "poll"
    assert not any("IDLE" in c for c in mailbox.commands)
    # Searched more than once, waiting in between (0.5 s, then 1 s).
    assert sum("UID SEARCH" in c for c in mailbox.commands) >= 3
    landing = ctx.facts[LANDING_FACT]
    assert landing.raw == MESSAGE and landing.method == "poll"


async def test_a_message_filed_in_the_special_use_junk_folder(certs: PeerCerts) -> None:
    out, _ = await _find(Mailbox(folder="Spam"), certs)
    (finding,) = out.findings
    assert (finding.code, finding.severity, finding.evidence["folder"]) == (
        "send.find.junk",
        Severity.FAIL,
        "Spam",
    )


async def test_a_message_that_never_arrives_is_could_not_tell(certs: PeerCerts) -> None:
    out, _ = await _find(Mailbox(arrives_after=3600), certs, send_timeout=1.0)
    (finding,) = out.findings
    assert (finding.code, finding.severity) == ("send.find.timeout", Severity.ERROR)
    assert finding.evidence["searched"] == ["INBOX", "Spam"]


async def test_without_uidplus_the_message_is_only_flagged(certs: PeerCerts) -> None:
    mailbox = Mailbox()
    out = await _cleanup(mailbox, certs)
    assert [(f.code, f.severity) for f in out.findings] == [("send.cleanup.flagged_only", Severity.INFO)]
    assert any(c.endswith("UID STORE 7 +FLAGS.SILENT (\\Deleted)") for c in mailbox.commands)
    # A plain EXPUNGE would remove every message the user flagged: never sent.
    assert not any("EXPUNGE" in c for c in mailbox.commands)


async def test_with_uidplus_only_the_test_message_is_expunged(certs: PeerCerts) -> None:
    mailbox = Mailbox(capabilities="IMAP4rev1 AUTH=PLAIN UIDPLUS")
    out = await _cleanup(mailbox, certs)
    assert out.findings == []
    assert any(c.endswith("UID EXPUNGE 7") for c in mailbox.commands)
    assert out.details["deleted"] == [{"folder": "INBOX", "messages": 1, "flagged": True, "expunged": True}]


async def test_a_server_that_will_not_delete_is_a_warning(certs: PeerCerts) -> None:
    out = await _cleanup(Mailbox(store_reply="NO [CANNOT] Mailbox is read-only."), certs)
    assert [(f.code, f.severity) for f in out.findings] == [("send.cleanup.failed", Severity.WARN)]


async def test_with_idle_the_check_waits_in_idle_between_searches(certs: PeerCerts) -> None:
    mailbox = Mailbox(capabilities="IMAP4rev1 AUTH=PLAIN IDLE", arrives_after=1.2)
    out, _ = await _find(mailbox, certs)
    assert out.findings == [] and out.details["waited_with"] == "idle", out
    # No EXISTS comes from this script: each IDLE ends at its bound, and INBOX is searched again.
    assert mailbox.idling >= 2


async def test_cancelled_while_waiting_in_idle_leaves_nothing_running(certs: PeerCerts) -> None:
    mailbox = Mailbox(capabilities="IMAP4rev1 AUTH=PLAIN IDLE", arrives_after=3600)
    async with peer(mailbox, tls=certs.server_context()) as server:
        ctx = _context(server.port, certs, send_timeout=60)
        before = asyncio.all_tasks()
        task = asyncio.ensure_future(check_send_find(ctx))
        await asyncio.wait_for(mailbox.idle_started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ctx.stop_started()
        # The peer's side of the connection ends too: the check closed it.
        await asyncio.sleep(0.3)
        left = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()}
        assert left == set()
        count = len(mailbox.commands)
        await asyncio.sleep(1.0)
        assert len(mailbox.commands) == count, "nothing may reach the server after the cancellation"


async def test_the_copy_the_server_put_in_sent_is_deleted_too(certs: PeerCerts) -> None:
    mailbox = Mailbox(capabilities="IMAP4rev1 AUTH=PLAIN UIDPLUS", sent_copy=True)
    out = await _cleanup(mailbox, certs)
    assert out.findings == []
    deleted: Any = out.details["deleted"]
    assert [d["folder"] for d in deleted] == ["INBOX", "Sent"]
    assert [c.split(" ", 1)[1] for c in mailbox.commands if " SELECT " in c] == [
        'SELECT "INBOX"',
        'SELECT "Sent"',
    ]
