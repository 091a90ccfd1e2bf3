"""Scripted SMTP and IMAP conversations, and the scenarios the check tests and the canary test share.

A scenario is a peer script, an account (as changes to a base payload), options, and the finding
code it must end in. ``tests/checks/test_smtp.py`` and ``test_imap.py`` assert each one's finding and
what the peer received; ``tests/checks/test_secrets_canary.py`` runs every one with a canary password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from inboxcheck._check import CheckContext, CheckSpec
from inboxcheck._credential import Credential
from inboxcheck._models import Account, CheckResult, Report
from inboxcheck._options import CheckOptions
from inboxcheck._presets import load_presets
from inboxcheck._runner import run_checks
from tests.peers import DnsPeer, Peer, PeerCerts, PeerConn, Script, secret_wire_forms

PASSWORD = "correct horse battery"
#: An OAuth2 access token, for token logins (Credential.bearer).
TOKEN = "ya29.a0Af-token-for-the-peer.only_in_tests"
USER = "sam@peer.test"
TIMEOUT = 1.0
# Generous for a loaded 2-core CI: every scenario must end well within this.
ELAPSED_BOUND = 5.0
IMPLICIT_SMTP_PORT = 465


def _crlf(text: str) -> bytes:
    # surrogateescape: a test writes a raw byte (a Latin-1 \xfc) as "\udcfc" in a reply.
    return (text.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n").encode("utf-8", "surrogateescape")


# --- SMTP ----------------------------------------------------------------------------------------


@dataclass
class SmtpScript:
    """A configurable SMTP server. Replies are given as the server sends them (``250-...`` lines)."""

    tls: ssl.SSLContext | None = None
    banner: str = "220 mail.peer.test ESMTP inboxcheck peer"
    extensions: tuple[str, ...] = ("PIPELINING", "SIZE 10240000", "STARTTLS", "AUTH PLAIN LOGIN", "8BITMIME")
    extensions_after_tls: tuple[str, ...] = ("PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "8BITMIME")
    starttls_reply: str = "220 2.0.0 Ready to start TLS"
    auth_reply: str = "235 2.7.0 Authentication successful"
    #: A failure challenge (``334 <text>``) sent before ``auth_reply``; the client's answer is kept.
    auth_challenge: str | None = None
    challenge_answers: list[bytes] = field(default_factory=list)
    ehlo_hook: Callable[[PeerConn], Any] | None = None
    #: Runs instead of the reply to the end of DATA (the message is in ``messages`` already).
    data_hook: Callable[[PeerConn], Any] | None = None
    # Replies to sending (the send test): MAIL FROM, RCPT TO, and the end of DATA.
    mail_reply: str = "250 2.1.0 Ok"
    rcpt_reply: str = "250 2.1.5 Ok"
    data_reply: str = "250 2.0.0 Ok: queued as 4ABC123"
    commands: list[bytes] = field(default_factory=list)
    #: The messages received with DATA, without the final dot.
    messages: list[bytes] = field(default_factory=list)

    async def __call__(self, conn: PeerConn) -> None:
        await conn.send(_crlf(self.banner))
        encrypted = False
        while True:
            line = await conn.line()
            if not line:
                return
            self.commands.append(line)
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                if self.ehlo_hook is not None:
                    await self.ehlo_hook(conn)
                    return
                extensions = self.extensions_after_tls if encrypted else self.extensions
                lines = ["mail.peer.test", *extensions]
                text = "\n".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{item}" for i, item in enumerate(lines)
                )
                await conn.send(_crlf(text))
            elif verb == b"STARTTLS":
                await conn.send(_crlf(self.starttls_reply))
                if self.starttls_reply.startswith("220") and self.tls is not None:
                    await conn.start_tls(self.tls)
                    encrypted = True
            elif verb == b"AUTH":
                if line.upper().startswith(b"AUTH LOGIN"):
                    await conn.send(b"334 UGFzc3dvcmQ6\r\n")
                    if not await conn.line():
                        return
                if self.auth_challenge is not None:
                    await conn.send(_crlf(f"334 {self.auth_challenge}"))
                    answer = await conn.reader.readline()
                    if not answer:
                        return
                    self.challenge_answers.append(answer)
                await conn.send(_crlf(self.auth_reply))
            elif verb == b"QUIT":
                await conn.send(b"221 2.0.0 Bye\r\n")
                return
            elif verb == b"MAIL":
                await conn.send(_crlf(self.mail_reply))
            elif verb == b"RCPT":
                await conn.send(_crlf(self.rcpt_reply))
            elif verb == b"RSET":
                await conn.send(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                await conn.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                body = bytearray()
                # Read raw: an empty line inside the message is not the end of the connection.
                while (data := await conn.reader.readline()) not in (b".\r\n", b""):
                    body += data
                self.messages.append(bytes(body))
                if self.data_hook is not None:
                    await self.data_hook(conn)
                    return
                await conn.send(_crlf(self.data_reply))
            else:
                await conn.send(b"502 5.5.2 Error: command not recognized\r\n")


# --- IMAP ----------------------------------------------------------------------------------------


@dataclass
class ImapScript:
    """A configurable IMAP server. ``login_reply`` lines: untagged ones start with ``*``, the others
    get the command's tag."""

    tls: ssl.SSLContext | None = None
    greeting: str = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] inboxcheck peer ready"
    capabilities: str = "IMAP4rev1 LITERAL+ SASL-IR STARTTLS LOGINDISABLED AUTH=PLAIN"
    capabilities_after_tls: str = "IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN"
    capabilities_implicit: str = "IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN"
    starttls_reply: str = "OK Begin TLS negotiation now"
    login_reply: str = "OK [CAPABILITY IMAP4rev1 IDLE] Logged in"
    examine_reply: str = (
        "* 3 EXISTS\n* 0 RECENT\n* OK [UIDVALIDITY 1700000000] UIDs valid\nOK [READ-ONLY] Examine completed"
    )
    implicit: bool = False
    #: A failure challenge (``+ <text>``) sent after AUTHENTICATE's response, before ``login_reply``.
    auth_challenge: str | None = None
    challenge_answers: list[bytes] = field(default_factory=list)
    capability_hook: Callable[[PeerConn], Any] | None = None
    commands: list[bytes] = field(default_factory=list)

    async def _reply(self, conn: PeerConn, tag: str, text: str) -> bool:
        """Send ``text``; False when it ended the session (a BYE)."""
        lines = [line if line.startswith("*") else f"{tag} {line}" for line in text.split("\n")]
        await conn.send(_crlf("\n".join(lines)))
        return not any(line.startswith("* BYE") for line in lines)

    async def __call__(self, conn: PeerConn) -> None:
        await conn.send(_crlf(self.greeting))
        encrypted = self.implicit
        while True:
            line = await conn.line()
            if not line:
                return
            self.commands.append(line)
            parts = line.decode("utf-8", "replace").split(" ")
            tag, command = parts[0], (parts[1].upper() if len(parts) > 1 else "")
            if command == "CAPABILITY":
                if self.capability_hook is not None:
                    await self.capability_hook(conn)
                    return
                caps = (
                    self.capabilities_implicit
                    if self.implicit
                    else (self.capabilities_after_tls if encrypted else self.capabilities)
                )
                await conn.send(_crlf(f"* CAPABILITY {caps}\n{tag} OK Pre-login capabilities listed."))
            elif command == "STARTTLS":
                await self._reply(conn, tag, self.starttls_reply)
                if self.starttls_reply.startswith("OK") and self.tls is not None:
                    await conn.start_tls(self.tls)
                    encrypted = True
            elif command in ("LOGIN", "AUTHENTICATE"):
                if command == "AUTHENTICATE" and len(parts) == 3:  # no SASL-IR: ask for the response
                    await conn.send(b"+ \r\n")
                    if not await conn.line():
                        return
                if command == "AUTHENTICATE" and self.auth_challenge is not None:
                    await conn.send(_crlf(f"+ {self.auth_challenge}"))
                    answer = await conn.reader.readline()
                    if not answer:
                        return
                    self.challenge_answers.append(answer)
                if not await self._reply(conn, tag, self.login_reply):
                    return
            elif command == "EXAMINE":
                await self._reply(conn, tag, self.examine_reply)
            elif command == "LOGOUT":
                await conn.send(_crlf(f"* BYE Logging out\n{tag} OK Logout completed."))
                return
            else:
                await conn.send(_crlf(f"{tag} BAD Error in IMAP command received by server."))


# --- running a check against a peer ---------------------------------------------------------------


@dataclass
class Run:
    report: Report
    result: CheckResult
    elapsed: float

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.result.findings]

    def detail(self, key: str) -> Any:
        """A value of the result's details, untyped for the test's convenience."""
        return self.result.details[key]

    def finding(self, code: str) -> Any:
        for item in self.result.findings:
            if item.code == code:
                return item
        raise AssertionError(f"no finding {code}; got {self.codes}: {self.result.summary}")


def base_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "email_address": "sam@peer.test",
        "display_name": "Sam Peer",
        "inbox_type": "CUSTOM_SMTP",
        "smtp_host": "127.0.0.1",
        "smtp_port": 587,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "smtp_use_tls": True,
        "imap_host": "127.0.0.1",
        "imap_port": 993,
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_use_ssl": True,
    }
    payload.update(changes)
    return payload


async def run_check(
    specs: list[CheckSpec],
    name: str,
    payload: dict[str, Any],
    *,
    certs: PeerCerts,
    token: str | None = None,
    **options: Any,
) -> Run:
    """Run one check; with ``token`` both logins use it as an OAuth2 access token."""
    account = Account.model_validate(payload)
    if token is not None:
        account = account.with_credentials(
            smtp=Credential.bearer(account.smtp_username, token),
            imap=Credential.bearer(account.imap_username, token),
        )
    opts = CheckOptions(
        timeout=options.pop("timeout", TIMEOUT), deadline=options.pop("deadline", 20), **options
    )
    start = time.perf_counter()
    report = await run_checks(account, options=opts, ssl_context=certs.client_context(), specs=specs)
    elapsed = time.perf_counter() - start
    return Run(report, report.check(name), elapsed)


def check_context(**changes: Any) -> CheckContext:
    """A context for calling a check's internals directly, for the base account with ``changes``."""
    account = Account.model_validate(base_payload(**changes))
    return CheckContext(account, options=CheckOptions(), presets=load_presets(), match=None)


_OPTION_KEYS = ("allow_plaintext", "nameservers", "timeout", "deadline", "token")


async def run_login(specs: list[CheckSpec], name: str, certs: PeerCerts, **changes: Any) -> Run:
    """Run one login check; ``changes`` mixes the account's fields with the run's options."""
    options = {k: changes.pop(k) for k in _OPTION_KEYS if k in changes}
    return await run_check(specs, name, base_payload(**changes), certs=certs, **options)


def assert_no_secret(data: bytes) -> None:
    for form in secret_wire_forms(USER, PASSWORD):
        assert form not in data, f"the password (as {form!r}) reached the peer"


def assert_bounded(run: Run) -> None:
    assert run.elapsed < ELAPSED_BOUND, f"took {run.elapsed:.2f} s"
    assert run.result.traceback is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def peer(script: Script, *, tls: ssl.SSLContext | None = None, port: int = 0) -> AsyncIterator[Peer]:
    async with Peer(script, tls=tls, port=port) as server:
        yield server


__all__ = [
    "ELAPSED_BOUND",
    "IMPLICIT_SMTP_PORT",
    "PASSWORD",
    "TIMEOUT",
    "TOKEN",
    "USER",
    "DnsPeer",
    "ImapScript",
    "Run",
    "SmtpScript",
    "assert_bounded",
    "assert_no_secret",
    "base_payload",
    "check_context",
    "free_port",
    "peer",
    "run_check",
    "run_login",
]
