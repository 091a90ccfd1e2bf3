"""The IMAP conversation of the login check: aioimaplib's protocol, driven directly.

How aioimaplib is used, and why not its ``IMAP4`` client class: that class opens the connection itself,
with no way to pass a connected socket, a TLS server name or to run STARTTLS, and it logs every byte
at debug level. The check drives the library's ``IMAP4ClientProtocol`` (its parser and command
engine) directly, through :class:`_Protocol`, a minimal subclass that

- never logs what it sends or receives (the library masks a LOGIN password only in its raw form, so a
  password with a quote or a backslash reached the log in its quoted form), and cuts every form of
  the password out of what it receives before the library sees it (the library logs each status
  line, and a server may echo a command);
- gives LOGIN and AUTHENTICATE commands a masked ``repr``/``str``: the library puts a pending command's
  text into exception messages (for instance on an unexpected tag), which would carry the password;
- bounds a line at :data:`MAX_LINE` bytes and a response at :data:`MAX_RESPONSE`, and turns
  anything the parser chokes on into a failure the check reports, instead of an exception escaping
  into the event loop;
- quotes the username as well as the password in LOGIN (the library sends the username bare);
- drives the AUTHENTICATE exchange of a token login itself (:class:`_SaslExchange`): the initial
  response after a ``+`` where the server has no SASL-IR, and the answer a failure challenge needs
  (the library's own ``xoauth2`` never answers Google's base64 JSON challenge, and would wait for
  ever); a server that keeps challenging gets ``*``, the cancel (RFC 9051 section 6.2.2).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from aioimaplib import aioimaplib

from inboxcheck._secrets import REDACTED, Scrubber
from inboxcheck.checks.login.oauth import TokenChallenge, dummy_response

__all__ = ["CLOSED_BY_SERVER", "MAX_LINE", "MAX_RESPONSE"]

#: The longest response line accepted (RFC 7162 section 4 asks clients to accept at least 8 KB).
MAX_LINE: Final = 256 * 1024
#: The most a server may send before completing a command: none of the check's commands (CAPABILITY,
#: LOGIN, EXAMINE, LOGOUT) has a legitimate answer anywhere near this.
MAX_RESPONSE: Final = 1024 * 1024


CLOSED_BY_SERVER: Final = "the server closed the connection"


class _PeerFailed(Exception):
    """The server closed the connection or sent something the parser could not take."""


class _MaskedCommand(aioimaplib.Command):  # type: ignore[misc]
    """A command whose text holds a secret: its ``str``/``repr`` never shows the arguments."""

    def __init__(self, name: str, tag: str, *args: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name, tag, *args, loop=loop)
        self.wire = f"{tag} {name} {' '.join(args)}"

    def __repr__(self) -> str:
        return f"{self.tag} {self.name} {REDACTED}"

    __str__ = __repr__


@dataclass
class _SaslExchange:
    """One AUTHENTICATE of a token login: what to answer each ``+`` continuation."""

    mechanism: str
    initial: str
    scrub: Scrubber
    sent_initial: bool = False
    challenge: TokenChallenge | None = None
    answers: int = 0

    def answer(self, line: bytes) -> bytes:
        text = line[1:].strip().decode("ascii", "replace")
        if not self.sent_initial:
            self.sent_initial = True
            return self.initial.encode("ascii")
        self.answers += 1
        if self.answers == 1:
            self.challenge = TokenChallenge.decode(text, self.scrub)
            return dummy_response(self.mechanism).encode("ascii")
        return b"*"


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    # The library is untyped; these are the attributes of its protocol that the check touches.
    incomplete_line: bytes
    current_command: Any
    pending_sync_command: Any
    transport: Any
    capabilities: set[str]
    imap_version: str
    state: str
    loop: asyncio.AbstractEventLoop
    tasks: set[asyncio.Future[Any]]

    def __init__(self, loop: asyncio.AbstractEventLoop, scrub: Scrubber) -> None:
        # No conn_lost_cb: a bound method of this protocol stored on it is a reference cycle, and
        # the whole connection (asyncio's TLS layer with its 256 KiB buffer) would then wait for a
        # full collection instead of going when the check ends: hundreds of them in a batch.
        super().__init__(loop)
        # A server that echoes a command back would otherwise put the password into the library's
        # debug log (it logs every status line): secrets are cut from what is received, first.
        self._scrub = scrub
        self._since_tagged = 0
        self.failed: asyncio.Future[str] = loop.create_future()
        self.greeted: asyncio.Future[str] = loop.create_future()
        self.greeting: str | None = None
        self._wire: dict[str, str] = {}
        self.sasl: _SaslExchange | None = None

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if self.sasl is None or command is None or command.name != "AUTHENTICATE":
            super()._continuation(line)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.sasl.answer(line) + b"\r\n")

    def fail(self, reason: str) -> None:
        if not self.failed.done():
            self.failed.set_result(reason)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.failed.done():
            self.failed.set_result(CLOSED_BY_SERVER)

    def data_received(self, d: bytes) -> None:
        # The library's data_received, without its debug log of the raw bytes, with a line bound,
        # and with parser errors kept inside the check.
        if self.failed.done():
            return
        self._since_tagged += len(d)
        if self._since_tagged > MAX_RESPONSE:
            self.fail(f"sent more than {MAX_RESPONSE // 1024} KiB without completing a command")
            return
        data = self.incomplete_line + d
        data = self._scrub.bytes(data)
        if len(data) > MAX_LINE and b"\r\n" not in data[-MAX_LINE:]:
            self.fail(f"sent a line longer than {MAX_LINE // 1024} KiB")
            return
        try:
            self._handle_responses(data, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete:
            self.current_command = incomplete.cmd
            self.incomplete_line = incomplete.data
        except RecursionError:
            self.fail("sent more response lines at once than an IMAP client can take")
        except Exception as exc:  # noqa: BLE001 - whatever the peer sent, it must not escape
            self.fail(f"sent a response the IMAP parser could not read ({type(exc).__name__})")

    def _response_done(self, line: bytes) -> None:
        self._since_tagged = 0
        super()._response_done(line)

    def send(self, line: str, scrub: str | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write((self._wire.pop(line, line) + "\r\n").encode())

    async def welcome(self, command: bytes) -> None:
        if self.greeting is not None:
            return  # the library starts a welcome for every line received before the first ends
        self.greeting = command.decode("utf-8", "replace")
        try:
            await super().welcome(command)
        except Exception as exc:  # noqa: BLE001 - a bad greeting is a finding, not a crash
            self.fail(f"greeted with something that is not IMAP ({type(exc).__name__})")
        else:
            if not self.greeted.done():
                self.greeted.set_result(self.greeting)

    async def execute_masked(self, name: str, *args: str) -> tuple[_MaskedCommand, Any]:
        command = _MaskedCommand(name, self.new_tag(), *args, loop=self.loop)
        self._wire[str(command)] = command.wire
        async with self.state_condition:
            response = await self.execute(command)
            if response.result == "OK":
                self.state = aioimaplib.AUTH
            self.state_condition.notify_all()
        return command, response

    async def capability(self) -> None:
        """The library's CAPABILITY, reading the reply as server text: its strict decode would turn
        one byte that is not UTF-8 into a crash of the check."""
        response = await self.execute(aioimaplib.Command("CAPABILITY", self.new_tag(), loop=self.loop))
        lines = _lines(response)
        listed = lines[0].split() if lines else []
        self.capabilities = set(listed)
        versions = [item.upper() for item in listed if item.upper() in aioimaplib.AllowedVersions]
        if not versions:
            raise aioimaplib.Error("server not IMAP4 compliant")
        self.imap_version = versions[-1]

    def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _lines(response: Any) -> list[str]:
    out = []
    for line in getattr(response, "lines", []) or []:
        if isinstance(line, bytes | bytearray):
            out.append(bytes(line).decode("utf-8", "replace"))
    return out


def _close(proto: _Protocol) -> None:
    transport = proto.transport
    if transport is not None:
        transport.abort()
    proto.cancel_tasks()
    if not proto.failed.done():
        proto.failed.set_result("closed by inboxcheck")
