"""Cancelling ``check``, ``connect``, ``diagnose`` or ``run_batch`` cancels everything it started.

The peers greet late and record every byte: once the call has been cancelled (by ``wait_for``), no
task it started may be left pending and no further byte may reach a server, however long one waits.
The DNS server never answers, so lookups are in flight at the moment of cancellation too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import inboxcheck
from inboxcheck._batch import run_batch
from inboxcheck._diagnose import diagnose
from inboxcheck._options import CheckOptions, Family
from tests.peers import Peer, PeerCerts, PeerConn
from tests.scenarios import ImapScript, SmtpScript, base_payload

# Longer than the call is given: every conversation is in its first steps when it is cancelled.
GREETING_DELAY = 0.8
CANCEL_AFTER = 0.5
# How long the servers keep listening after the cancellation, for a byte that should never come.
AFTERWARDS = 1.5


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


def _late(script: Callable[[PeerConn], Awaitable[None]]) -> Callable[[PeerConn], Awaitable[None]]:
    async def run(conn: PeerConn) -> None:
        await asyncio.sleep(GREETING_DELAY)
        await script(conn)

    return run


class _SilentDns(asyncio.DatagramProtocol):
    """A nameserver that takes every query and never answers."""

    def __init__(self) -> None:
        self.queries = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.queries += 1


Call = Callable[[dict[str, Any], CheckOptions, PeerCerts, Path], Awaitable[object]]


async def _check(payload: dict[str, Any], options: CheckOptions, certs: PeerCerts, tmp: Path) -> object:
    return await inboxcheck.check(payload, options=options, ssl_context=certs.client_context())


async def _connect(payload: dict[str, Any], options: CheckOptions, certs: PeerCerts, tmp: Path) -> object:
    return await inboxcheck.connect(
        payload, api_key=None, dry_run=True, options=options, ssl_context=certs.client_context()
    )


async def _diagnose(payload: dict[str, Any], options: CheckOptions, certs: PeerCerts, tmp: Path) -> object:
    return await diagnose(payload, options=options, ssl_context=certs.client_context())


async def _batch(payload: dict[str, Any], options: CheckOptions, certs: PeerCerts, tmp: Path) -> object:
    path = tmp / "accounts.jsonl"
    lines = [{**payload, "email_address": f"user{i}@peer.test"} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return await run_batch(
        path, options=options, output=tmp / "results.jsonl", ssl_context=certs.client_context(), env={}
    )


@pytest.mark.parametrize(
    "call", [_check, _connect, _diagnose, _batch], ids=["check", "connect", "diagnose", "batch"]
)
async def test_a_cancelled_call_leaves_no_task_and_sends_nothing_more(
    call: Call, certs: PeerCerts, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    dns_transport, dns = await loop.create_datagram_endpoint(_SilentDns, local_addr=("127.0.0.1", 0))
    smtp_script = SmtpScript(tls=certs.server_context())
    imap_script = ImapScript(tls=certs.server_context())
    try:
        async with (
            Peer(_late(smtp_script)) as smtp,
            Peer(_late(imap_script)) as imap,
        ):
            payload = base_payload(smtp_port=smtp.port, imap_port=imap.port, imap_use_ssl=False)
            nameserver = f"127.0.0.1:{dns_transport.get_extra_info('sockname')[1]}"
            options = CheckOptions.model_validate({"timeout": 5, "deadline": 20, "nameservers": [nameserver]})
            before = asyncio.all_tasks()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call(payload, options, certs, tmp_path), CANCEL_AFTER)
            servers = smtp._tasks | imap._tasks
            left = {t for t in asyncio.all_tasks() - before - servers if not t.done()}
            assert left == set(), [t.get_coro() for t in left]
            # The call reached the servers (it was cut mid-conversation, not before it began) ...
            assert smtp.connections and imap.connections
            assert dns.queries > 0
            await asyncio.sleep(AFTERWARDS)
            # ... and nothing it started said another word to them.
            assert smtp.received == b""
            assert imap.received == b""
            assert smtp_script.commands == [] and imap_script.commands == []
    finally:
        dns_transport.close()


async def test_a_check_cancelled_mid_conversation_sends_no_credential(certs: PeerCerts) -> None:
    async def slow_ehlo(conn: PeerConn) -> None:
        await asyncio.sleep(GREETING_DELAY)
        await conn.send(b"250-mail.peer.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
        await conn.until_closed()

    async def slow_capability(conn: PeerConn) -> None:
        await asyncio.sleep(GREETING_DELAY)
        await conn.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
        await conn.until_closed()

    smtp_script = SmtpScript(tls=certs.server_context(), ehlo_hook=slow_ehlo)
    imap_script = ImapScript(tls=certs.server_context(), capability_hook=slow_capability)
    async with Peer(smtp_script) as smtp, Peer(imap_script) as imap:
        payload = base_payload(smtp_port=smtp.port, imap_port=imap.port, imap_use_ssl=False)
        options = CheckOptions(timeout=5, deadline=20, families=frozenset({Family.SMTP, Family.IMAP}))
        before = asyncio.all_tasks()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_check(payload, options, certs, Path()), CANCEL_AFTER)
        left = {t for t in asyncio.all_tasks() - before - smtp._tasks - imap._tasks if not t.done()}
        assert left == set(), [t.get_coro() for t in left]
        sent = (smtp.received, imap.received)
        await asyncio.sleep(AFTERWARDS)
        assert (smtp.received, imap.received) == sent
    assert [c.split(b" ")[0].upper() for c in smtp_script.commands] == [b"EHLO"]
    assert [c.split(b" ")[1].upper() for c in imap_script.commands] == [b"CAPABILITY"]
