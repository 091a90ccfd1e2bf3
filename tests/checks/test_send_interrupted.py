"""An interrupted send test never leaves its message behind unsaid.

When the run ends before ``send.cleanup`` (a cancelled call, as Ctrl-C and SIGTERM do in the CLI; or
the run's deadline), the runner deletes the test message on the way out, within a few seconds and
shielded from the cancellation; when it cannot, it says where the message is and its token (a
warning on the ``inboxcheck.send`` logger, and ``send.cleanup.left_behind`` in the report).
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from inboxcheck._models import Account, Report, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks import send
from inboxcheck.checks.login import imap, smtp
from tests.peers import PeerCerts, PeerConn
from tests.scenarios import SmtpScript, base_payload, free_port, peer

SPECS = [*smtp.CHECKS, *imap.CHECKS, *send.CHECKS]
TOKEN_HEADER = re.compile(rb"X-Inboxcheck-Token: (ic[0-9a-f]{20})")


# --- the lab: the message is deleted on the way out ------------------------------------------------


def _imap(lab: Any, user: str) -> imaplib.IMAP4_SSL:
    endpoint = lab.imap["imaps"]
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    client = imaplib.IMAP4_SSL(endpoint.address, endpoint.port, ssl_context=context, timeout=10)
    account = lab.user(user)
    client.login(account.username, account.password)
    return client


def _held_tokens(lab: Any, user: str) -> list[str]:
    """The tokens of the test messages in the lab's Held folder (where X-Lab-Hold files them)."""
    with _imap(lab, user) as client:
        status, _ = client.select("Held", readonly=True)
        if status != "OK":
            return []
        _, data = client.search(None, "HEADER", "X-Inboxcheck-Token", '""')
        tokens = []
        for number in data[0].split():
            _, parts = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (X-Inboxcheck-Token)])")
            for part in parts:
                if isinstance(part, tuple) and (match := TOKEN_HEADER.search(part[1])):
                    tokens.append(match.group(1).decode())
        return tokens


def _wait_for_held(lab: Any, user: str, before: list[str]) -> str:
    ends = time.monotonic() + 60
    while time.monotonic() < ends:
        new = [token for token in _held_tokens(lab, user) if token not in before]
        if new:
            return new[0]
        time.sleep(0.1)
    raise AssertionError("the test message never reached the Held folder")


@pytest.mark.lab
async def test_a_cancelled_send_test_deletes_its_message_on_the_way_out(lab: Any) -> None:
    user = "alice@lab.test"
    before = await asyncio.to_thread(_held_tokens, lab, user)
    address, port = lab.nameserver
    options = CheckOptions(
        timeout=5.0,
        nameservers=(parse_nameserver(f"{address}:{port}"),),
        ca_file=lab.ca_file,
        send_test=True,
        send_timeout=120.0,  # the message is filed where the search does not look: it waits
        deadline=180.0,
        test_headers=(("X-Lab-Hold", "yes"),),
    )
    payload = lab.account(user, smtp="submission", imap="imaps")
    run = asyncio.ensure_future(run_checks(Account.model_validate(payload), options=options, specs=SPECS))
    token = await asyncio.to_thread(_wait_for_held, lab, user, before)
    assert not run.done()
    run.cancel()  # what Ctrl-C (and now SIGTERM) does to the CLI's run
    with pytest.raises(asyncio.CancelledError):
        await run
    assert token not in await asyncio.to_thread(_held_tokens, lab, user)  # left in Held before


# --- scripted peers: the message cannot be deleted, and the report or the log says where -------------


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


async def _stalled_data(certs: PeerCerts, received: asyncio.Event) -> SmtpScript:
    async def stall(conn: PeerConn) -> None:
        received.set()  # the message is on the server; its answer never comes
        await conn.until_closed()

    return SmtpScript(tls=certs.server_context(), data_hook=stall)


def _options(**changes: Any) -> CheckOptions:
    return CheckOptions(**({"timeout": 5.0, "deadline": 60.0, "send_test": True} | changes))


async def test_a_cancelled_run_that_cannot_delete_says_where_the_message_is(
    certs: PeerCerts, caplog: pytest.LogCaptureFixture
) -> None:
    received = asyncio.Event()
    script = await _stalled_data(certs, received)
    async with peer(script) as server:
        # IMAP refuses: the message cannot be deleted.
        account = Account.model_validate(base_payload(smtp_port=server.port, imap_port=free_port()))
        run = asyncio.ensure_future(
            run_checks(account, options=_options(), ssl_context=certs.client_context(), specs=SPECS)
        )
        await asyncio.wait_for(received.wait(), 30)
        run.cancel()
        with (
            caplog.at_level(logging.WARNING, logger="inboxcheck.send"),
            pytest.raises(asyncio.CancelledError),
        ):
            await run
    match = TOKEN_HEADER.search(script.messages[0])
    assert match is not None
    token = match.group(1).decode()
    warnings = [r.getMessage() for r in caplog.records if r.name == "inboxcheck.send"]
    assert any(token in text and "INBOX" in text and account.email_address in text for text in warnings), (
        warnings
    )


async def test_a_run_past_its_deadline_reports_the_message_left_behind(certs: PeerCerts) -> None:
    received = asyncio.Event()
    script = await _stalled_data(certs, received)
    async with peer(script) as server:
        account = Account.model_validate(base_payload(smtp_port=server.port, imap_port=free_port()))
        report: Report = await run_checks(
            account, options=_options(deadline=4.0), ssl_context=certs.client_context(), specs=SPECS
        )
    assert received.is_set()
    cleanup = report.check("send.cleanup")
    left = next(f for f in cleanup.findings if f.code == "send.cleanup.left_behind")
    match = TOKEN_HEADER.search(script.messages[0])
    assert match is not None and left.evidence["token"] == match.group(1).decode()
    assert left.evidence["recipient"] == account.email_address
    assert cleanup.status is Status.ERROR  # the deadline's could-not-tell, with the warning beside it


@pytest.mark.lab
def test_sigterm_to_the_cli_deletes_the_message_and_exits_as_interrupted(lab: Any, tmp_path: Path) -> None:
    user = "alice@lab.test"
    before = _held_tokens(lab, user)
    account = tmp_path / "account.json"
    account.write_text(json.dumps(lab.account(user, smtp="submission", imap="imaps")), encoding="utf-8")
    address, port = lab.nameserver
    command = [
        sys.executable,
        "-m",
        "inboxcheck",
        "check",
        str(account),
        "--send-test",
        "--send-timeout",
        "120",
        "--deadline",
        "180",
        "--timeout",
        "5",
        "--nameserver",
        f"{address}:{port}",
        "--ca-file",
        str(lab.ca_file),
        "--only",
        "smtp",
        "--only",
        "imap",
        "--test-header",
        "X-Lab-Hold:yes",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        token = _wait_for_held(lab, user, before)
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # reaped, pipes closed: nothing leaks into the next test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr  # killed by the signal (-15) before, message left in Held
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert token not in _held_tokens(lab, user)


# --- a batch killed after its test message left: the resume sends no second one --------------------


def _delete_held(lab: Any, user: str, tokens: list[str]) -> None:
    with _imap(lab, user) as client:
        client.select("Held")
        for token in tokens:
            _, data = client.search(None, "HEADER", "X-Inboxcheck-Token", token)
            for number in data[0].split():
                client.store(number, "+FLAGS", "\\Deleted")
        client.expunge()


@pytest.mark.lab
@pytest.mark.parametrize("command", ["check", "connect"])
def test_a_batch_killed_after_its_test_message_left_sends_no_second_one_on_resume(
    lab: Any, tmp_path: Path, command: str
) -> None:
    from inboxcheck._batch import read_results

    user = "bob@lab.test"
    before = _held_tokens(lab, user)
    batch = tmp_path / "accounts.jsonl"
    batch.write_text(json.dumps(lab.account(user, smtp="submission", imap="imaps")) + "\n", encoding="utf-8")
    output = tmp_path / "results.jsonl"
    address, port = lab.nameserver
    args = [
        sys.executable,
        "-m",
        "inboxcheck",
        command,
        "--batch",
        str(batch),
        "--output",
        str(output),
        "--send-test",
        "--timeout",
        "5",
        "--nameserver",
        f"{address}:{port}",
        "--ca-file",
        str(lab.ca_file),
        "--only",
        "smtp",
        "--only",
        "imap",
        "--test-header",
        "X-Lab-Hold:yes",  # filed where the search does not look: the run waits, its check line unwritten
    ]
    env = None
    if command == "connect":
        # Never reached: the resumed check cannot tell, so nothing is created.
        args += ["--api-url", f"http://127.0.0.1:{free_port()}"]
        env = {**os.environ, "COLDSEND_API_KEY": "cs_test_" + "g" * 24}
    proc = subprocess.Popen(
        [*args, "--send-timeout", "120", "--deadline", "180"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    tokens: list[str] = []
    try:
        token = _wait_for_held(lab, user, before)
        proc.send_signal(signal.SIGKILL)  # the message is in the mailbox; the check line is not on disk
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert [r for r in read_results(output) if "verdict" in r] == []
        # Written ahead: on disk before the message was handed to the server.
        assert [r["token"] for r in read_results(output) if r.get("kind") == "send_test"] == [token]
        resumed = subprocess.run(
            [*args, "--send-timeout", "5", "--resume"], capture_output=True, text=True, timeout=180, env=env
        )
        tokens = [t for t in _held_tokens(lab, user) if t not in before]
        assert tokens == [token], "exactly one test message arrived"
        assert resumed.returncode == 3, resumed.stderr
        assert "Traceback" not in resumed.stderr
        assert "--resend-test" in resumed.stderr
        (line,) = [r for r in read_results(output) if "verdict" in r]
        assert line["verdict"] == "error"
        message = next(c for c in line["report"]["checks"] if c["name"] == "send.message")
        (unknown,) = [f for f in message["findings"] if f["code"] == "send.message.outcome_unknown"]
        assert unknown["evidence"]["token"] == token and unknown["evidence"]["recipient"] == user
        assert "--resend-test" in unknown["fix"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _delete_held(lab, user, tokens or [t for t in _held_tokens(lab, user) if t not in before])
