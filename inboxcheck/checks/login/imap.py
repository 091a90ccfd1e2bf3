"""The IMAP login check: resolve, connect, TLS, CAPABILITY, LOGIN, EXAMINE INBOX, LOGOUT.

TLS follows the project's rule: ``imap_use_ssl`` means implicit TLS; without it the check upgrades with
STARTTLS when the server offers it, and sends the password over a clear-text connection only with
``allow_plaintext``. Nothing is changed in the mailbox: INBOX is opened read-only (EXAMINE).

The conversation itself (aioimaplib's protocol, masked commands, the SASL exchange) is in
:mod:`inboxcheck.checks.login.imap_protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Awaitable
from typing import Any, Final, Literal, TypeVar

from aioimaplib import aioimaplib
from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._endpoint import TlsMode
from inboxcheck._knowledge import ReplyMatch, alert_text, match_reply
from inboxcheck._models import Severity
from inboxcheck._options import Family
from inboxcheck.checks.login.imap_protocol import (
    CLOSED_BY_SERVER,
    MAX_LINE,
    _close,
    _lines,
    _MaskedCommand,
    _PeerFailed,
    _Protocol,
    _SaslExchange,
)
from inboxcheck.checks.login.net import connect_any
from inboxcheck.checks.login.oauth import TOKEN_MECHANISMS, TOKEN_REJECTED_FIX
from inboxcheck.checks.login.probe import LoginProbe, Stop, transport_session
from inboxcheck.checks.login.tls import (
    TlsFailure,
    TlsFailureKind,
    TlsSession,
    classify_tls_error,
    inspecting_context,
)

__all__ = ["CHECKS", "MAX_LINE", "check_imap_login"]

_MAX_EVIDENCE: Final = 2000
_T = TypeVar("_T")


def _sorted(items: set[str]) -> list[JsonValue]:
    return list[JsonValue](sorted(items))


class _ImapLogin(LoginProbe):
    """One run of the check: the account, the outcome being built, and the conversation's state."""

    PROTOCOL = "imap"
    IMPLICIT_PORT = 993
    TLS_SETTING = "imap_use_ssl"
    PLAIN_ON_IMPLICIT_PORT = " Port 993 expects TLS from the first byte, but imap_use_ssl is off."
    REFUSED_FIX = (
        "Check imap_port against the provider's setup page (993 for implicit TLS, 143 for STARTTLS)."
    )
    TIMEOUT_FIX = "Check the port and whether a firewall drops the traffic, then try again."
    MODE_MISMATCH = "imap.tls.mode_mismatch"
    GREETING = re.compile(r"^\* (OK|PREAUTH)\b", re.IGNORECASE)

    def __init__(self, ctx: CheckContext) -> None:
        account = ctx.account
        super().__init__(
            ctx,
            endpoint=account.endpoint("imap"),
            username=account.imap_username,
        )
        self.proto: _Protocol | None = None

    def mode_mismatch_fix(self, observed: Literal["implicit", "plain"]) -> str:
        if observed == "implicit":
            return f"Turn imap_use_ssl on for port {self.port}."
        return (
            f"Turn imap_use_ssl off for port {self.port} (the connection is then upgraded with STARTTLS "
            "before the password is sent), or use the provider's implicit-TLS port (usually 993)."
        )

    def temporary(self, reply: str) -> bool:
        """Whether a refusal's standard code (RFC 5530 ``[UNAVAILABLE]``, ``[LIMIT]``) makes it temporary."""
        match = match_reply("imap", reply, providers=self.provider_ids)
        return match is not None and match.rule.standard and match.rule.severity is Severity.ERROR

    def step(self, name: str, text: str) -> None:
        self.steps.append({"step": name, "reply": self.scrub(text)[:_MAX_EVIDENCE]})

    # --- findings ----------------------------------------------------------------------------

    def protocol_error(self, what: str, *, stage: str) -> None:
        # A server that hangs up proves only that it is not answering now; one that answers
        # nonsense proves it is no IMAP server.
        closed = what == CLOSED_BY_SERVER
        self.out.add(
            "imap.protocol.error",
            Severity.ERROR if closed else Severity.FAIL,
            f"The server at {self.where} {self.scrub(what)} during the {stage.replace('_', ' ')}, so "
            + (
                "inboxcheck could not tell whether the login works."
                if closed
                else "it is not usable as an IMAP server."
            ),
            fix="Check that the host and port are the provider's IMAP endpoint (usually 993 with "
            "implicit TLS, or 143 with STARTTLS).",
            host=self.host,
            port=self.port,
            stage=stage,
            greeting=self.scrub(self.proto.greeting or "")[:_MAX_EVIDENCE] if self.proto else None,
        )

    # --- the conversation --------------------------------------------------------------------

    async def wait(
        self, awaitable: Awaitable[_T], stage: str, *, report: bool = True, within: float | None = None
    ) -> _T:
        """``awaitable``, bounded by ``within`` (the step timeout by default) and cut short if the peer
        fails."""
        assert self.proto is not None
        task: asyncio.Future[_T] = asyncio.ensure_future(awaitable)
        waiters: set[asyncio.Future[Any]] = {task, self.proto.failed}
        limit = self.ctx.step_timeout() if within is None else within
        try:
            done, _ = await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # asyncio.wait leaves its futures running: the step must not outlive a cancelled run.
            task.cancel()
            await asyncio.wait({task})
            raise
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self.proto.failed.done():
            raise _PeerFailed(self.proto.failed.result())
        if report:
            self.timed_out(stage)
        raise Stop

    async def _open(self, sock: socket.socket, tls_context: ssl.SSLContext | None) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = _Protocol(loop, self.scrub)
        self.proto = proto
        timeout = self.ctx.step_timeout()
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: proto,
                sock=sock,
                ssl=tls_context,
                server_hostname=self.host if tls_context is not None else None,
                ssl_handshake_timeout=timeout if tls_context is not None else None,
            )
        return proto

    async def _converse_on(self, sock: socket.socket, tls_context: ssl.SSLContext) -> bool:
        try:
            proto = await self._open(sock, tls_context if self.mode is TlsMode.IMPLICIT else None)
        except TimeoutError:
            sock.close()
            self.timed_out("tls_handshake")
            return False
        except OSError as exc:
            sock.close()
            failure = classify_tls_error(exc) or TlsFailure(
                TlsFailureKind.HANDSHAKE, str(exc) or type(exc).__name__
            )
            await self._tls_failed(failure)
            return False
        try:
            return await self._converse_with(proto)
        except _PeerFailed as exc:
            self.protocol_error(str(exc), stage=self._stage)
            return False
        finally:
            _close(proto)

    _stage = "greeting"

    async def _converse_with(self, proto: _Protocol) -> bool:
        self._stage = "greeting"
        # The greeting's wait so far counts: a silent port takes --timeout, not more.
        await self.wait(asyncio.shield(proto.greeted), "greeting", within=self.greeting_timeout())
        self.step("greeting", proto.greeting or "")
        if proto.state == aioimaplib.AUTH:
            self.protocol_error("pre-authenticated the connection without a login", stage="greeting")
            return False
        self.out.details["capabilities"] = _sorted(proto.capabilities)
        if self.mode is not TlsMode.IMPLICIT and not await self._starttls_or_plain(proto):
            await self._logout(proto)
            return False
        self.take_session(proto.transport)
        ok = await self._login(proto)
        if ok:
            ok = await self._after_login(proto)
        await self._logout(proto)
        return ok

    async def _starttls_or_plain(self, proto: _Protocol) -> bool:
        caps = {c.upper() for c in proto.capabilities}
        if "STARTTLS" not in caps:
            if not self.ctx.options.allow_plaintext:
                self.out.add(
                    "imap.starttls.unavailable",
                    Severity.FAIL,
                    f"imap_use_ssl is off and the server at {self.where} does not offer STARTTLS, so "
                    "the password would cross the network unencrypted; inboxcheck did not send it.",
                    fix="Turn imap_use_ssl on and use the provider's implicit-TLS port (usually 993).",
                    host=self.host,
                    port=self.port,
                    capabilities=_sorted(caps),
                )
                return False
            self.clear_text(
                "imap.tls.disabled",
                f"The connection to {self.where} is not encrypted (imap_use_ssl is off and the server "
                "offers no STARTTLS)",
                "Turn imap_use_ssl on and use the provider's implicit-TLS port (usually 993).",
                host=self.host,
                port=self.port,
            )
            return True
        self.out.details["capabilities_before_tls"] = _sorted(caps)
        self._stage = "starttls"
        command = aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop)
        response = await self.wait(proto.execute(command), "starttls")
        self.step("starttls", f"{response.result} {' '.join(_lines(response))}")
        if response.result != "OK":
            reply = f"{response.result} {' '.join(_lines(response))}"
            temporary = self.temporary(reply)
            self.out.add(
                "imap.starttls.failed",
                Severity.ERROR if temporary else Severity.FAIL,
                f"The server at {self.where} offers STARTTLS but refused to start it"
                + (" for now (a temporary refusal: could not tell)" if temporary else "")
                + "; inboxcheck sent no credentials.",
                fix="Check again later; if it persists, the server's operator must fix its TLS setup (the "
                "reply is in the evidence)."
                if temporary
                else "The server's operator must fix its TLS setup; the reply is in the evidence.",
                host=self.host,
                port=self.port,
                reply=self.scrub(f"{response.result} {' '.join(_lines(response))}"),
            )
            return False
        # RFC 3207/2595: anything buffered before the handshake is clear text an attacker may have
        # injected; drop it.
        proto.incomplete_line = b""
        loop = asyncio.get_running_loop()
        transport = proto.transport
        try:
            async with asyncio.timeout(self.ctx.step_timeout()):
                new_transport = await loop.start_tls(
                    transport,
                    proto,
                    await asyncio.shield(self.tls_ready),
                    server_hostname=self.host,
                    ssl_handshake_timeout=self.ctx.step_timeout(),
                )
        except TimeoutError:
            self.timed_out("tls_handshake")
            raise Stop from None
        except (OSError, RuntimeError) as exc:
            if transport is not None:
                transport.abort()
            failure = classify_tls_error(exc) or TlsFailure(
                TlsFailureKind.HANDSHAKE, str(exc) or type(exc).__name__
            )
            await self._tls_failed(failure)
            raise Stop from None
        proto.transport = new_transport
        self._stage = "capability"
        await self.wait(proto.capability(), "capability")
        self.out.details["capabilities"] = _sorted(proto.capabilities)
        return True

    async def _login(self, proto: _Protocol) -> bool:
        account = self.ctx.account
        caps = {c.upper() for c in proto.capabilities}
        self._stage = "login"
        credential = account.imap_credential
        username = credential.username
        if not credential.sendable():
            self._unsendable()
            return False
        try:
            if credential.is_token:
                found = await self._token_login(proto, caps)
                if found is None:
                    return False
                mechanism, command, response = found
            elif "LOGINDISABLED" not in caps:
                mechanism = "LOGIN"
                self.sending_credentials()
                command, response = await self.wait(
                    proto.execute_masked("LOGIN", *credential.imap_login_arguments()), "login"
                )
            elif "AUTH=PLAIN" in caps and "SASL-IR" in caps:
                mechanism = "AUTHENTICATE PLAIN"
                self.sending_credentials()
                command, response = await self.wait(
                    proto.execute_masked("AUTHENTICATE", "PLAIN", credential.sasl_plain()), "login"
                )
            else:
                self.out.add(
                    "imap.login_disabled",
                    Severity.FAIL,
                    f"The server at {self.where} announces LOGINDISABLED and offers no other password "
                    "login, so inboxcheck sent no credentials"
                    + ("" if self.session else "; servers do this on connections that are not encrypted")
                    + ".",
                    fix="Turn imap_use_ssl on (implicit TLS, usually port 993), or use port 143 on a "
                    "server that offers STARTTLS.",
                    host=self.host,
                    port=self.port,
                    capabilities=_sorted(caps),
                )
                return False
        except ValueError:  # the library's own check for characters that end a command line
            self._unsendable()
            return False
        text = "\n".join(_lines(response))
        verbatim = self.scrub(f"{response.result} {text}".strip())[:_MAX_EVIDENCE]
        self.step(mechanism.lower().replace(" ", "_"), verbatim)
        if response.result == "OK":
            self.out.details["authenticated_as"] = username
            self.out.details["auth_mechanism"] = mechanism
            return True
        if credential.is_token:
            self._token_rejected(response.result, text, verbatim)
        else:
            self._rejected(command, response.result, text, verbatim)
        return False

    async def _token_login(self, proto: _Protocol, caps: set[str]) -> tuple[str, _MaskedCommand, Any] | None:
        """AUTHENTICATE with the token: XOAUTH2, else OAUTHBEARER; None (and a finding) when the
        server offers neither."""
        credential = self.ctx.account.imap_credential
        name = next((m for m in TOKEN_MECHANISMS if f"AUTH={m}" in caps), None)
        if name is None:
            self.out.add(
                "imap.auth.unsupported",
                Severity.FAIL,
                f"The server at {self.where} offers neither XOAUTH2 nor OAUTHBEARER, so an OAuth2 token "
                "cannot log in here; inboxcheck sent no credentials.",
                fix="Log in with the mailbox's app password instead of a token, or use the provider's "
                "OAuth2 endpoint.",
                host=self.host,
                port=self.port,
                capabilities=_sorted(caps),
            )
            return None
        initial = credential.xoauth2() if name == "XOAUTH2" else credential.oauthbearer()
        proto.sasl = _SaslExchange(name, initial, self.scrub, sent_initial="SASL-IR" in caps)
        args = (name, initial) if "SASL-IR" in caps else (name,)
        self.sending_credentials()
        command, response = await self.wait(proto.execute_masked("AUTHENTICATE", *args), "login")
        return f"AUTHENTICATE {name}", command, response

    def _token_rejected(self, result: str, text: str, verbatim: str) -> None:
        assert self.proto is not None
        challenge = self.proto.sasl.challenge if self.proto.sasl is not None else None
        evidence: dict[str, JsonValue] = {
            "host": self.host,
            "port": self.port,
            "stage": "login",
            "reply": verbatim,
        }
        if challenge is not None:
            evidence["challenge"] = challenge.evidence()
        temporary = self.temporary(f"{result} {text}")
        if self.known_token_reply(f"{result} {text}", evidence):
            return
        self.out.add(
            "imap.auth.token_rejected",
            Severity.ERROR if temporary else Severity.FAIL,
            f"The server at {self.where} refused the OAuth2 token ({result})"
            + (challenge.reason() if challenge is not None else "")
            + ".",
            fix=TOKEN_REJECTED_FIX,
            **evidence,
        )

    def _unsendable(self) -> None:
        self.out.add(
            "imap.auth.unsendable",
            Severity.FAIL,
            "The IMAP username or password contains characters that cannot be sent in an IMAP login "
            "(a line break, a NUL, or text with no UTF-8 form), so inboxcheck sent nothing.",
            fix="Re-enter the username and password without line breaks or control characters.",
            host=self.host,
            port=self.port,
        )

    def _rejected(self, command: _MaskedCommand, result: str, text: str, verbatim: str) -> None:
        evidence: dict[str, JsonValue] = {
            "host": self.host,
            "port": self.port,
            "stage": "login",
            "reply": verbatim,
        }
        # RFC 9051 section 7.1: an ALERT's text must be shown to the user, whatever the rest means.
        alert = alert_text(self.scrub(text))
        note = f' The server says: "{alert}"' if alert else ""
        if alert:
            evidence["alert"] = alert
        if self.known_reply(f"{result} {text}", evidence, note=note):
            return
        self.out.add(
            "imap.auth.rejected",
            Severity.FAIL,
            f"The server at {self.where} refused the {command.name} ({result}).{note}",
            fix="Check the IMAP username and password; the server's reply is in the evidence.",
            **evidence,
        )

    def rule_evidence(self, match: ReplyMatch) -> dict[str, JsonValue]:
        return {"rule": match.rule.id, "response_codes": list(match.reply.response_codes)}

    async def _after_login(self, proto: _Protocol) -> bool:
        """What the check does once logged in: the login check opens INBOX read-only; the send test
        looks for its message."""
        await self._examine(proto)
        return True

    async def _examine(self, proto: _Protocol) -> None:
        self._stage = "examine"
        response = await self.wait(proto.simple_command("EXAMINE", "INBOX"), "examine")
        lines = _lines(response)
        self.step("examine", f"{response.result} {' '.join(lines)}")
        if response.result != "OK":
            temporary = self.temporary(f"{response.result} {' '.join(lines)}")
            self.out.add(
                "imap.inbox.unavailable",
                Severity.ERROR if temporary else Severity.FAIL,
                f"The login works, but the server at {self.where} would not open INBOX "
                f"({response.result}"
                + (", a temporary refusal: could not tell whether it can" if temporary else "")
                + "), so the platform could not read replies.",
                fix="Check again later (in a batch: --retry-errors)."
                if temporary
                else "Check that the mailbox exists and is not disabled or over quota at the provider.",
                host=self.host,
                port=self.port,
                reply=self.scrub(f"{response.result} {' '.join(lines)}")[:_MAX_EVIDENCE],
            )
            return
        for line in lines:
            head = line.split(" ", 1)
            if len(head) == 2 and head[1].strip().upper() == "EXISTS" and head[0].isdigit():
                self.out.details["inbox_messages"] = int(head[0])

    async def _logout(self, proto: _Protocol) -> None:
        if proto.failed.done() or proto.transport is None or proto.transport.is_closing():
            return
        with contextlib.suppress(_PeerFailed, Stop, aioimaplib.Abort, asyncio.TimeoutError):
            task = asyncio.ensure_future(proto.logout())
            try:
                done, _ = await asyncio.wait({task, proto.failed}, timeout=min(self.ctx.step_timeout(), 2.0))
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.wait({task})
                raise
            if task not in done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _inspect_certificate(self, address: str) -> TlsSession | None:
        """Connect again, accepting any certificate, only to read it. No credential is ever sent."""
        connected = await connect_any(self.ctx, (address,), self.port)
        if connected.sock is None:
            return None
        saved = self.proto
        proto: _Protocol | None = None
        try:
            if self.mode is TlsMode.IMPLICIT:
                proto = await self._open(connected.sock, inspecting_context())
            else:
                proto = await self._open(connected.sock, None)
                await self.wait(asyncio.shield(proto.greeted), "greeting", report=False)
                command = aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop)
                response = await self.wait(proto.execute(command), "starttls", report=False)
                if response.result != "OK":
                    return None
                proto.incomplete_line = b""
                async with asyncio.timeout(self.ctx.step_timeout()):
                    proto.transport = await asyncio.get_running_loop().start_tls(
                        proto.transport, proto, inspecting_context(), server_hostname=self.host
                    )
            return transport_session(proto.transport)
        except (_PeerFailed, Stop, OSError, RuntimeError, TimeoutError):
            return None
        finally:
            if proto is not None:
                _close(proto)
            else:
                connected.sock.close()
            self.proto = saved


async def check_imap_login(ctx: CheckContext) -> Outcome:
    """Log in to the account's IMAP server the way the platform will, and open INBOX read-only."""
    return await _ImapLogin(ctx).run()


CHECKS = [CheckSpec("imap.login", "IMAP login", Family.IMAP, check_imap_login)]
