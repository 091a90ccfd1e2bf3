"""The SMTP login check: resolve, connect, greeting, EHLO, TLS, AUTH, QUIT. It never sends mail.

TLS follows the project's rule: ``smtp_use_tls`` means implicit TLS on port 465 and STARTTLS on any
other port; with it off the connection stays in clear text, which is a failure in itself, and the
password is sent only with ``allow_plaintext``. Credentials never cross a connection whose certificate
did not verify, nor one where STARTTLS was wanted and not offered.

aiosmtplib is given a socket this check connected itself (to one of the addresses it resolved) and the
host *name* as TLS server name, so the certificate is verified against the name in the account.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Final, Literal

import aiosmtplib
from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._endpoint import SMTP_IMPLICIT_PORT, TlsMode
from inboxcheck._knowledge import ReplyMatch
from inboxcheck._models import Severity, undecodable_hex
from inboxcheck._options import Family
from inboxcheck.checks.login.microsoft import add_basic_auth_notice
from inboxcheck.checks.login.net import connect_any, local_address_literal
from inboxcheck.checks.login.oauth import (
    TOKEN_MECHANISMS,
    TOKEN_REJECTED_FIX,
    TokenChallenge,
    dummy_response,
)
from inboxcheck.checks.login.probe import LoginProbe, Stop, transport_session
from inboxcheck.checks.login.tls import (
    TlsFailure,
    TlsFailureKind,
    TlsSession,
    classify_tls_error,
    inspecting_context,
)

__all__ = ["CHECKS", "check_smtp_login"]

IMPLICIT_TLS_PORT: Final = SMTP_IMPLICIT_PORT
SMTP_CONTINUE: Final = 334
SMTP_AUTH_OK: Final = 235
_MAX_REPLY_EVIDENCE: Final = 2000


@dataclass(frozen=True)
class _Verbatim:
    code: int
    text: str

    def __str__(self) -> str:
        lines = self.text.split("\n") or [""]
        out = [f"{self.code}-{line}" for line in lines[:-1]] + [f"{self.code} {lines[-1]}"]
        return "\n".join(out)[:_MAX_REPLY_EVIDENCE]


class _SmtpLogin(LoginProbe):
    """One run of the check: the account, the outcome being built, and the conversation's state."""

    PROTOCOL = "smtp"
    IMPLICIT_PORT = IMPLICIT_TLS_PORT
    TLS_SETTING = "smtp_use_tls"
    PLAIN_ON_IMPLICIT_PORT = (
        " Port 465 expects TLS from the first byte, but smtp_use_tls is off, so both sides "
        "waited for the other."
    )
    REFUSED_FIX = (
        "Check smtp_port against the provider's setup page (587 for STARTTLS, 465 for implicit TLS)."
    )
    TIMEOUT_FIX = (
        "Check the port, and whether a firewall between here and the server drops outgoing SMTP (many "
        "networks block it); then try again."
    )
    MODE_MISMATCH = "smtp.tls.mode_mismatch"
    GREETING = re.compile(r"^220[ -]")

    def __init__(self, ctx: CheckContext) -> None:
        account = ctx.account
        super().__init__(
            ctx,
            endpoint=account.endpoint("smtp"),
            username=account.smtp_username,
        )

    # --- helpers ---------------------------------------------------------------------------

    def step(self, name: str, reply: _Verbatim | str) -> None:
        if isinstance(reply, _Verbatim):  # scrubbed whole, then cut to the evidence's length
            reply = _Verbatim(reply.code, self.scrub(reply.text))
        text = self.scrub(str(reply))
        step: dict[str, JsonValue] = {"step": name, "reply": text}
        raw = undecodable_hex(text)  # bytes that are not UTF-8: the text shows U+FFFD, the hex the bytes
        if raw is not None:
            step["reply_hex"] = raw
        self.steps.append(step)

    def port_hint(self) -> str:
        """What the preset knows about this provider's ports, for messages about a failed connect."""
        preset = self.ctx.preset
        if preset is None or not preset.smtp.endpoints:
            return ""
        ports = preset.smtp.ports()
        if self.port in ports:
            return ""
        offered = ", ".join(f"{port} ({mode.value})" for port, mode in sorted(ports.items()))
        only = "only offers" if len(ports) == 1 else "offers"
        return f" {preset.name} {only} port {offered} for SMTP."

    def mode_mismatch_fix(self, observed: Literal["implicit", "plain"]) -> str:
        if observed == "implicit" and self.port == IMPLICIT_TLS_PORT:
            return "Turn smtp_use_tls on: port 465 speaks implicit TLS."
        if observed == "implicit":
            fix = (
                "The account can say implicit TLS only on port 465 (smtp_use_tls on any other port "
                "means STARTTLS): use port 465 with smtp_use_tls on if the server offers implicit TLS "
                "there, or the provider's STARTTLS port (usually 587)."
            )
        else:
            fix = (
                "Port 465 here greets in clear text, so it wants STARTTLS, which the account can say "
                "only on another port: use the provider's STARTTLS port (usually 587) with smtp_use_tls on."
            )
        return fix + self.port_hint()

    def protocol_error(self, what: str, detail: str, *, stage: str, closed: bool = False) -> None:
        # A server that hangs up proves only that it is not answering now (stopped, overloaded);
        # one that answers nonsense proves it is no SMTP server.
        self.out.add(
            "smtp.protocol.error",
            Severity.ERROR if closed else Severity.FAIL,
            f"The server at {self.where} {what}, so inboxcheck could not tell whether the login works."
            if closed
            else f"The server at {self.where} {what}, so it is not usable as an SMTP server.",
            fix="Check that the host and port are the provider's SMTP submission endpoint "
            "(usually 587 with STARTTLS or 465 with implicit TLS); the reply is in the evidence.",
            host=self.host,
            port=self.port,
            stage=stage,
            detail=self.scrub(detail)[:_MAX_REPLY_EVIDENCE],
        )

    def explain(self, stage: str, code: int, text: str, fallback: tuple[str, str, str]) -> None:
        """A finding for an unexpected reply: the knowledge base's, else ``fallback``."""
        evidence = self.reply_evidence(stage, code, text)
        if self.known_reply(text, evidence, reply_code=code):
            return
        finding_code, message, fix = fallback
        severity = Severity.ERROR if 400 <= code < 500 else Severity.FAIL
        self.out.add(finding_code, severity, message, fix=fix, **evidence)

    def reply_evidence(self, stage: str, code: int, text: str) -> dict[str, JsonValue]:
        return {
            "host": self.host,
            "port": self.port,
            "stage": stage,
            "reply": str(_Verbatim(code, self.scrub(text))),
            "reply_code": code,
        }

    def rule_evidence(self, match: ReplyMatch) -> dict[str, JsonValue]:
        return {"enhanced_code": match.reply.enhanced, "rule": match.rule.id}

    # --- the conversation --------------------------------------------------------------------

    def _client(self, sock: socket.socket, tls_context: ssl.SSLContext) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            sock=sock,
            use_tls=self.mode is TlsMode.IMPLICIT,
            start_tls=False,
            tls_context=tls_context,
            local_hostname=local_address_literal(sock),
            # The greeting's wait so far counts: a silent port takes --timeout, not more.
            timeout=self.greeting_timeout(),
        )

    async def _converse_on(self, sock: socket.socket, tls_context: ssl.SSLContext) -> bool:
        client = self._client(sock, tls_context)
        try:
            return await self._converse_with(client)
        finally:
            _close(client)

    async def _converse_with(self, client: aiosmtplib.SMTP) -> bool:
        await self._connect(client)
        await self._ehlo(client, "ehlo")
        if self.mode is TlsMode.STARTTLS:
            await self._starttls(client)
            await self._ehlo(client, "ehlo_after_tls")
        elif self.mode is TlsMode.NONE and not self._plaintext(client):
            await _quit(client, self.ctx)
            return False
        self.take_session(client.transport)
        mechanism = self._mechanism(client)
        if mechanism is None:
            await _quit(client, self.ctx)
            return False
        ok = await self._auth(client, mechanism)
        if ok:
            ok = await self._after_login(client)
        await _quit(client, self.ctx)
        return ok

    async def _after_login(self, client: aiosmtplib.SMTP) -> bool:
        """What a check built on this login does once logged in (the send test); the login check
        itself does nothing more."""
        return True

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        stage = "tls_handshake" if self.mode is TlsMode.IMPLICIT else "greeting"
        try:
            banner = await client.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            self.step("greeting", _Verbatim(exc.code, exc.message))
            self.out.add(
                "smtp.connect.rejected",
                # 421 and other 4xx greetings are temporary (RFC 5321 4.2.1): could not tell.
                Severity.ERROR if 400 <= exc.code < 500 else Severity.FAIL,
                f"The server at {self.where} answered the connection with {exc.code} instead of a "
                "greeting: it does not accept this client now.",
                fix="Read the server's reply in the evidence; a 554 often means this address is "
                "blocked by the server, a 421 that it is overloaded (try again later).",
                host=self.host,
                port=self.port,
                reply=str(_Verbatim(exc.code, self.scrub(exc.message))),
            )
            raise Stop from None
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            in_banner = isinstance(exc.__cause__, aiosmtplib.SMTPTimeoutError)
            self.timed_out("greeting" if in_banner else stage)
            raise Stop from None
        except (aiosmtplib.SMTPConnectError, ConnectionError, OSError) as exc:
            await self._connect_error(exc, stage)
            raise Stop from None
        except aiosmtplib.SMTPResponseException as exc:
            self.protocol_error("sent a greeting that is not SMTP", exc.message, stage="greeting")
            raise Stop from None
        except aiosmtplib.SMTPException as exc:
            self.protocol_error("broke off the greeting", str(exc), stage="greeting")
            raise Stop from None
        self.step("greeting", _Verbatim(banner.code, banner.message))

    async def _connect_error(self, exc: BaseException, stage: str) -> None:
        failure = classify_tls_error(exc)
        if self.mode is TlsMode.IMPLICIT and failure is None:
            # The socket was already connected, so an error here happened in the handshake.
            failure = TlsFailure(TlsFailureKind.HANDSHAKE, _describe(exc))
        if failure is not None:
            await self._tls_failed(failure)
            return
        self.protocol_error("closed the connection before greeting", _describe(exc), stage=stage, closed=True)

    async def _tls_failed(self, failure: TlsFailure) -> None:
        await super()._tls_failed(failure)
        if self.out.findings[-1].code == "smtp.tls.handshake_failed" and self.mode is TlsMode.IMPLICIT:
            self.out.findings[-1] = self.out.findings[-1].model_copy(
                update={
                    "fix": "Port 465 expects TLS from the first byte. If the server answers in clear "
                    "text here, it wants STARTTLS: use port 587 with smtp_use_tls on."
                }
            )

    async def _ehlo(self, client: aiosmtplib.SMTP, stage: str) -> None:
        client.timeout = self.ctx.step_timeout()
        try:
            response = await client.ehlo()
        except aiosmtplib.SMTPHeloError as exc:
            self.step(stage, _Verbatim(exc.code, exc.message))
            # A temporary refusal (4yz) is the knowledge base's "could not tell", not "no SMTP here".
            if not self.known_reply(
                exc.message, self.reply_evidence(stage, exc.code, exc.message), reply_code=exc.code
            ):
                self.protocol_error(f"refused EHLO with {exc.code}", exc.message, stage=stage)
            raise Stop from None
        except aiosmtplib.SMTPTimeoutError:
            self.timed_out(stage)
            raise Stop from None
        except aiosmtplib.SMTPResponseException as exc:
            self.protocol_error("answered EHLO with something that is not SMTP", exc.message, stage=stage)
            raise Stop from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.protocol_error("closed the connection after EHLO", _describe(exc), stage=stage, closed=True)
            raise Stop from None
        self.step(stage, _Verbatim(response.code, response.message))

    async def _starttls(self, client: aiosmtplib.SMTP) -> None:
        if not client.supports_extension("starttls"):
            self.out.add(
                "smtp.starttls.unavailable",
                Severity.FAIL,
                f"The server at {self.where} does not offer STARTTLS, so the connection cannot be "
                "encrypted; inboxcheck sent no credentials." + self.port_hint(),
                fix="Use the provider's encrypted endpoint: port 587 with STARTTLS or port 465 with "
                "implicit TLS (smtp_use_tls on)." + self.port_hint(),
                host=self.host,
                port=self.port,
                extensions=list[JsonValue](sorted(client.esmtp_extensions)),
            )
            await _quit(client, self.ctx)
            raise Stop
        client.timeout = self.ctx.step_timeout()
        try:
            response = await client.starttls(server_hostname=self.host, tls_context=self.tls_context)
        except aiosmtplib.SMTPResponseException as exc:
            self.step("starttls", _Verbatim(exc.code, exc.message))
            self.explain(
                "starttls",
                exc.code,
                exc.message,
                (
                    "smtp.starttls.failed",
                    f"The server at {self.where} offers STARTTLS but refused to start it "
                    f"({exc.code}); inboxcheck sent no credentials.",
                    "The server's operator must fix its TLS setup; the reply is in the evidence.",
                ),
            )
            await _quit(client, self.ctx)
            raise Stop from None
        except aiosmtplib.SMTPTimeoutError:
            self.timed_out("tls_handshake")
            raise Stop from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            failure = classify_tls_error(exc) or TlsFailure(TlsFailureKind.HANDSHAKE, _describe(exc))
            await self._tls_failed(failure)
            raise Stop from None
        self.step("starttls", _Verbatim(response.code, response.message))

    def _plaintext(self, client: aiosmtplib.SMTP) -> bool:
        """The finding for a clear-text connection; True when the password may still be sent."""
        offers = client.supports_extension("starttls")
        self.clear_text(
            "smtp.tls.disabled",
            "smtp_use_tls is off, so the connection (and the password) would cross the network "
            "unencrypted" + ("; the server offers STARTTLS" if offers else ""),
            "Turn smtp_use_tls on (STARTTLS on 587, implicit TLS on 465).",
            host=self.host,
            port=self.port,
            server_offers_starttls=offers,
        )
        return self.ctx.options.allow_plaintext

    def _mechanism(self, client: aiosmtplib.SMTP) -> str | None:
        offered = [m.upper() for m in client.server_auth_methods]
        self.out.details["auth_mechanisms"] = list(offered)
        token = self.ctx.account.smtp_credential.is_token
        for mechanism in TOKEN_MECHANISMS if token else ("PLAIN", "LOGIN"):
            if mechanism in offered:
                return mechanism
        if not offered and self.session is None and client.supports_extension("starttls"):
            message = (
                f"The server at {self.where} offers no way to log in on an unencrypted connection "
                "(it offers STARTTLS, and AUTH only after it)."
            )
            fix = "Turn smtp_use_tls on (STARTTLS on 587, implicit TLS on 465)."
        elif not offered:
            message = f"The server at {self.where} offers no way to log in (no AUTH in its EHLO reply)."
            fix = (
                "Use the provider's submission port (587 or 465): port 25 is for server-to-server "
                "relay and rarely accepts logins."
            )
        elif token:
            message = (
                f"The server at {self.where} offers {', '.join(offered)} but neither XOAUTH2 nor "
                "OAUTHBEARER, so an OAuth2 token cannot log in here."
            )
            fix = (
                "Log in with the mailbox's app password instead of a token, or use the provider's "
                "OAuth2 endpoint."
            )
        elif "XOAUTH2" in offered or "OAUTHBEARER" in offered:
            message = (
                f"The server at {self.where} only accepts OAuth2 logins ({', '.join(offered)}), "
                "not a password."
            )
            fix = (
                "Connect this mailbox with OAuth2 instead of a password (check it with a token: "
                "INBOXCHECK_SMTP_OAUTH_TOKEN, --oauth-token-file or --oauth-refresh-token-file)."
            )
        else:
            message = (
                f"The server at {self.where} only offers {', '.join(offered)}, none of which "
                "inboxcheck (or the platform) logs in with; PLAIN or LOGIN is needed."
            )
            fix = "Ask the server's operator to enable AUTH PLAIN and LOGIN over TLS."
        self.out.add(
            "smtp.auth.unsupported",
            Severity.FAIL,
            message + " inboxcheck sent no credentials.",
            fix=fix,
            host=self.host,
            port=self.port,
            offered=list(offered),
        )
        return None

    async def _auth(self, client: aiosmtplib.SMTP, mechanism: str) -> bool:
        credential = self.ctx.account.smtp_credential
        # A NUL would end the username early inside SASL PLAIN (RFC 4616), and CR/LF would end the
        # command line: the login would be someone else's or garbage, so nothing is sent.
        if not credential.sendable():
            self._unsendable()
            return False
        client.timeout = self.ctx.step_timeout()
        self.sending_credentials()
        challenge: TokenChallenge | None = None
        try:
            if mechanism == "PLAIN":
                response = await client.auth_plain(credential.username, credential.reveal())
            elif mechanism == "LOGIN":
                response = await client.auth_login(credential.username, credential.reveal())
            else:
                initial = credential.xoauth2() if mechanism == "XOAUTH2" else credential.oauthbearer()
                response = await client.execute_command(b"AUTH", mechanism.encode(), initial.encode("ascii"))
                if response.code == SMTP_CONTINUE:
                    # A failed token (Google; RFC 7628 3.2.3): a base64 JSON error as a challenge, which
                    # the client answers (an empty line, OAUTHBEARER's ^A) to get the final reply.
                    challenge = TokenChallenge.decode(response.message, self.scrub)
                    self.step("auth_challenge", _Verbatim(response.code, response.message))
                    response = await client.execute_command(dummy_response(mechanism).encode("ascii"))
                if response.code != SMTP_AUTH_OK:
                    raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)
        except aiosmtplib.SMTPResponseException as exc:
            self.step(f"auth_{mechanism.lower()}", _Verbatim(exc.code, exc.message))
            if credential.is_token:
                self._token_rejected(exc.code, exc.message, challenge)
                return False
            self.explain(
                "auth",
                exc.code,
                exc.message,
                (
                    "smtp.auth.rejected",
                    f"The server at {self.where} refused the login with {exc.code}.",
                    "Check the SMTP username and password; the server's reply is in the evidence.",
                ),
            )
            return False
        except aiosmtplib.SMTPTimeoutError:
            self.timed_out("auth")
            return False
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.protocol_error(
                "closed the connection during the login", _describe(exc), stage="auth", closed=True
            )
            return False
        except (ValueError, UnicodeError):
            self._unsendable()
            return False
        self.step(f"auth_{mechanism.lower()}", _Verbatim(response.code, response.message))
        self.out.details["authenticated_as"] = credential.username
        self.out.details["auth_mechanism"] = mechanism
        return True

    def _token_rejected(self, code: int, text: str, challenge: TokenChallenge | None) -> None:
        """A refused token: a temporary class stays "could not tell"; a decoded challenge says why;
        else the provider's rule for a token, else the generic finding."""
        evidence = self.reply_evidence("auth", code, text)
        if challenge is not None:
            evidence["challenge"] = challenge.evidence()
        temporary = 400 <= code < 500
        if self.known_token_reply(text, evidence, reply_code=code):
            return
        self.out.add(
            "smtp.auth.token_rejected",
            Severity.ERROR if temporary else Severity.FAIL,
            f"The server at {self.where} refused the OAuth2 token ({code})"
            + (challenge.reason() if challenge is not None else "")
            + ".",
            fix=TOKEN_REJECTED_FIX,
            **evidence,
        )

    def _unsendable(self) -> None:
        self.out.add(
            "smtp.auth.unsendable",
            Severity.FAIL,
            "The SMTP username or password contains characters that cannot be sent in an SMTP "
            "login (for example a line break or a NUL).",
            fix="Re-enter the username and password without line breaks or control characters.",
            host=self.host,
            port=self.port,
        )

    async def _inspect_certificate(self, address: str) -> TlsSession | None:
        """Connect again, with a context that accepts any certificate, only to read it.

        No credential is sent: the conversation stops right after the handshake.
        """
        connected = await connect_any(self.ctx, (address,), self.port)
        if connected.sock is None:
            return None
        client = self._client(connected.sock, inspecting_context())
        try:
            await client.connect()
            if self.mode is TlsMode.STARTTLS:
                await client.ehlo()
                await client.starttls(server_hostname=self.host, tls_context=inspecting_context())
            return transport_session(client.transport)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            return None
        finally:
            _close(client)


def _describe(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = str(current) or type(current).__name__
        if text not in parts:
            parts.append(text)
        current = current.__cause__
    return ": ".join(parts)


async def _quit(client: aiosmtplib.SMTP, ctx: CheckContext) -> None:
    """Say goodbye politely, without letting a server that ignores QUIT hold the check."""
    if not client.is_connected:
        return
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
        await client.quit(timeout=min(ctx.step_timeout(), 2.0))


def _close(client: aiosmtplib.SMTP) -> None:
    """Drop the connection at once: ``abort`` does not wait for a TLS close_notify a peer may never send."""
    transport = client.transport
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    client.close()


async def check_smtp_login(ctx: CheckContext) -> Outcome:
    """Log in to the account's SMTP server the way the platform will, and explain what went wrong."""
    out = await _SmtpLogin(ctx).run()
    add_basic_auth_notice(ctx, out)
    return out


CHECKS = [CheckSpec("smtp.login", "SMTP login", Family.SMTP, check_smtp_login)]
