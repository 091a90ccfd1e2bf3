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
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import aiosmtplib
from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._knowledge import match_reply
from inboxcheck._models import Severity
from inboxcheck._netutil import (
    ConnectFailure,
    ResolveFailure,
    connect_any,
    local_address_literal,
    resolve_host,
)
from inboxcheck._options import Family
from inboxcheck._secrets import Scrubber
from inboxcheck._tls import (
    TlsFailure,
    TlsFailureKind,
    TlsSession,
    add_session_findings,
    add_tls_failure,
    classify_tls_error,
    inspecting_context,
    prepare_ssl_context,
    session_of,
)
from inboxcheck.checks.login import LoginFact, fact_key

__all__ = ["CHECKS", "check_smtp_login"]

IMPLICIT_TLS_PORT: Final = 465
_MAX_REPLY_EVIDENCE: Final = 2000


class TlsMode(StrEnum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


def tls_mode(use_tls: bool, port: int) -> TlsMode:
    """The project's rule for ``smtp_use_tls``."""
    if not use_tls:
        return TlsMode.NONE
    return TlsMode.IMPLICIT if port == IMPLICIT_TLS_PORT else TlsMode.STARTTLS


class _Stop(Exception):
    """Ends the conversation early; the finding is already recorded."""


@dataclass(frozen=True)
class _Verbatim:
    code: int
    text: str

    def __str__(self) -> str:
        lines = self.text.split("\n") or [""]
        out = [f"{self.code}-{line}" for line in lines[:-1]] + [f"{self.code} {lines[-1]}"]
        return "\n".join(out)[:_MAX_REPLY_EVIDENCE]


class _SmtpLogin:
    """One run of the check: the account, the outcome being built, and the conversation's state."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        account = ctx.account
        self.host = account.smtp_host.strip("[]")
        self.port = account.smtp_port
        self.mode = tls_mode(account.smtp_use_tls, account.smtp_port)
        self.out = Outcome(summary="")
        self.steps: list[JsonValue] = []
        self.scrub = Scrubber.for_account(account)
        self.address: str | None = None
        self.session: TlsSession | None = None
        # Started now so that reading the CA store overlaps with resolving and connecting.
        self.tls_ready: asyncio.Future[ssl.SSLContext] = prepare_ssl_context(ctx)
        self.tls_context: ssl.SSLContext | None = None

    # --- helpers ---------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def step(self, name: str, reply: _Verbatim | str) -> None:
        self.steps.append({"step": name, "reply": self.scrub(str(reply))})

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

    def protocol_error(self, what: str, detail: str, *, stage: str) -> None:
        self.out.add(
            "smtp.protocol.error",
            Severity.FAIL,
            f"The server at {self.where} {what}, so it is not usable as an SMTP server.",
            fix="Check that the host and port are the provider's SMTP submission endpoint "
            "(usually 587 with STARTTLS or 465 with implicit TLS); the reply is in the evidence.",
            host=self.host,
            port=self.port,
            stage=stage,
            detail=self.scrub(detail)[:_MAX_REPLY_EVIDENCE],
        )

    def timed_out(self, stage: str, exc: BaseException) -> None:
        timeout = self.ctx.options.timeout
        hint = ""
        if stage == "greeting" and self.mode is not TlsMode.IMPLICIT and self.port == IMPLICIT_TLS_PORT:
            hint = (
                " Port 465 expects TLS from the first byte, but smtp_use_tls is off, so both sides "
                "waited for the other."
            )
        code = "smtp.connect.timeout" if stage in ("greeting", "tls_handshake") else "smtp.protocol.timeout"
        self.out.add(
            code,
            Severity.ERROR,
            f"The server at {self.where} stopped answering during the {stage.replace('_', ' ')} "
            f"(nothing within {timeout:g} s), so inboxcheck could not tell whether the login works.{hint}",
            fix="Check that the port is right and that no firewall drops the traffic, then try again "
            "with a longer --timeout." + (" Turn smtp_use_tls on for port 465." if hint else ""),
            host=self.host,
            port=self.port,
            stage=stage,
            timeout_s=timeout,
        )

    def explain(self, stage: str, code: int, text: str, fallback: tuple[str, str, str]) -> None:
        """A finding for an unexpected reply: the knowledge base's, else ``fallback``."""
        verbatim = str(_Verbatim(code, self.scrub(text)))
        preset_id = self.ctx.preset.id if self.ctx.preset else None
        match = match_reply("smtp", text, provider=preset_id, reply_code=code)
        evidence: dict[str, JsonValue] = {
            "host": self.host,
            "port": self.port,
            "stage": stage,
            "reply": verbatim,
            "reply_code": code,
        }
        if match is not None:
            evidence["enhanced_code"] = match.reply.enhanced
            evidence["rule"] = match.rule.id
            self.out.add(
                match.rule.code, match.rule.severity, match.rule.message, fix=match.rule.fix, **evidence
            )
            return
        finding_code, message, fix = fallback
        severity = Severity.ERROR if 400 <= code < 500 else Severity.FAIL
        self.out.add(finding_code, severity, message, fix=fix, **evidence)

    # --- the check ---------------------------------------------------------------------------

    async def run(self) -> Outcome:
        out = self.out
        out.details["tls_mode"] = self.mode.value
        resolution = await resolve_host(self.ctx, self.host, self.port)
        out.details["resolution"] = resolution.evidence()
        if not resolution.addresses:
            self._unresolvable(resolution.failure, resolution.detail)
            out.summary = f"could not find an address for {self.host}"
            return out
        connected = await connect_any(self.ctx, resolution.addresses, self.port)
        out.details["attempts"] = connected.evidence()
        if connected.sock is None:
            self._not_connected(connected.failure(), connected.evidence())
            out.summary = f"could not connect to {self.where}"
            return out
        self.address = connected.address
        logged_in = False
        with contextlib.suppress(_Stop):
            logged_in = await self._converse(connected.sock)
        out.details["steps"] = self.steps
        if self.session is not None:
            out.details["tls"] = self.session.evidence(self.ctx.now())
        if logged_in:
            self._record_fact()
            how = f"over {self.session.version}" if self.session else "without encryption"
            out.summary = f"logged in to {self.where} as {self.ctx.account.smtp_username} {how}"
        elif not out.summary:
            out.summary = f"could not log in to {self.where}"
        return out

    def _record_fact(self) -> None:
        cert = self.session.cert if self.session else None
        self.ctx.facts[fact_key("smtp")] = LoginFact(
            protocol="smtp",
            username=self.ctx.account.smtp_username,
            host=self.host,
            port=self.port,
            address=self.address,
            preset_id=self.ctx.preset.id if self.ctx.preset else None,
            cert_names=tuple(cert.names()) if cert else (),
        )

    def _unresolvable(self, failure: ResolveFailure | None, detail: str) -> None:
        if failure is ResolveFailure.NO_SUCH_NAME:
            self.out.add(
                "smtp.connect.unresolvable",
                Severity.FAIL,
                f"The SMTP host {self.host} does not resolve to any address ({detail}).",
                fix="Check the spelling of smtp_host against the provider's setup page.",
                host=self.host,
                detail=detail,
            )
        else:
            self.out.add(
                "smtp.connect.unresolvable",
                Severity.ERROR,
                f"The SMTP host {self.host} could not be resolved right now ({detail}), so inboxcheck "
                "could not tell whether it works.",
                fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
                host=self.host,
                detail=detail,
            )

    def _not_connected(self, failure: ConnectFailure, attempts: list[JsonValue]) -> None:
        hint = self.port_hint()
        if failure is ConnectFailure.REFUSED:
            self.out.add(
                "smtp.connect.refused",
                Severity.FAIL,
                f"Nothing accepts connections on {self.where}: every address refused.{hint}",
                fix="Check smtp_port against the provider's setup page (587 for STARTTLS, 465 for "
                "implicit TLS)." + hint,
                host=self.host,
                port=self.port,
                attempts=attempts,
            )
        elif failure is ConnectFailure.TIMEOUT:
            self.out.add(
                "smtp.connect.timeout",
                Severity.ERROR,
                f"Connecting to {self.where} timed out after {self.ctx.options.timeout:g} s on every "
                f"address, so inboxcheck could not tell whether the server works.{hint}",
                fix="Check the port, and whether a firewall between here and the server drops "
                "outgoing SMTP (many networks block it); then try again." + hint,
                host=self.host,
                port=self.port,
                attempts=attempts,
            )
        else:
            self.out.add(
                "smtp.connect.failed",
                Severity.ERROR,
                f"No address of {self.host} could be reached on port {self.port} (the network said no "
                "route), so inboxcheck could not tell whether the server works.",
                fix="Check this machine's network connection (IPv6 routes in particular), then try again.",
                host=self.host,
                port=self.port,
                attempts=attempts,
            )

    def _client(self, sock: socket.socket, tls_context: ssl.SSLContext) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            sock=sock,
            use_tls=self.mode is TlsMode.IMPLICIT,
            start_tls=False,
            tls_context=tls_context,
            local_hostname=local_address_literal(sock),
            timeout=self.ctx.step_timeout(),
        )

    async def _converse(self, sock: socket.socket) -> bool:
        try:
            self.tls_context = await asyncio.shield(self.tls_ready)
        except BaseException:
            sock.close()
            raise
        client = self._client(sock, self.tls_context)
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
        self._tls_session(client)
        mechanism = self._mechanism(client)
        if mechanism is None:
            await _quit(client, self.ctx)
            return False
        ok = await self._auth(client, mechanism)
        await _quit(client, self.ctx)
        return ok

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        stage = "tls_handshake" if self.mode is TlsMode.IMPLICIT else "greeting"
        try:
            banner = await client.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            self.step("greeting", _Verbatim(exc.code, exc.message))
            self.out.add(
                "smtp.connect.rejected",
                Severity.FAIL,
                f"The server at {self.where} answered the connection with {exc.code} instead of a "
                "greeting: it does not accept this client now.",
                fix="Read the server's reply in the evidence; a 554 often means this address is "
                "blocked by the server, a 421 that it is overloaded (try again later).",
                host=self.host,
                port=self.port,
                reply=str(_Verbatim(exc.code, self.scrub(exc.message))),
            )
            raise _Stop from None
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            in_banner = isinstance(exc.__cause__, aiosmtplib.SMTPTimeoutError)
            self.timed_out("greeting" if in_banner else stage, exc)
            raise _Stop from None
        except (aiosmtplib.SMTPConnectError, ConnectionError, OSError) as exc:
            await self._connect_error(exc, stage)
            raise _Stop from None
        except aiosmtplib.SMTPResponseException as exc:
            self.protocol_error("sent a greeting that is not SMTP", exc.message, stage="greeting")
            raise _Stop from None
        except aiosmtplib.SMTPException as exc:
            self.protocol_error("broke off the greeting", str(exc), stage="greeting")
            raise _Stop from None
        self.step("greeting", _Verbatim(banner.code, banner.message))

    async def _connect_error(self, exc: BaseException, stage: str) -> None:
        failure = classify_tls_error(exc)
        if self.mode is TlsMode.IMPLICIT and failure is None:
            # The socket was already connected, so an error here happened in the handshake.
            failure = TlsFailure(TlsFailureKind.HANDSHAKE, _describe(exc))
        if failure is not None:
            await self._tls_failed(failure)
            return
        self.protocol_error("closed the connection before greeting", _describe(exc), stage=stage)

    async def _tls_failed(self, failure: TlsFailure) -> None:
        cert = None
        if failure.kind is not TlsFailureKind.HANDSHAKE and self.address is not None:
            session = await self._inspect_certificate(self.address)
            cert = session.cert if session else None
        add_tls_failure(
            self.out, "smtp", failure, host=self.host, port=self.port, cert=cert, now=self.ctx.now()
        )
        if failure.kind is TlsFailureKind.HANDSHAKE and self.mode is TlsMode.IMPLICIT:
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
            self.protocol_error(f"refused EHLO with {exc.code}", exc.message, stage=stage)
            raise _Stop from None
        except aiosmtplib.SMTPTimeoutError as exc:
            self.timed_out(stage, exc)
            raise _Stop from None
        except aiosmtplib.SMTPResponseException as exc:
            self.protocol_error("answered EHLO with something that is not SMTP", exc.message, stage=stage)
            raise _Stop from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.protocol_error("closed the connection after EHLO", _describe(exc), stage=stage)
            raise _Stop from None
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
            raise _Stop
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
            raise _Stop from None
        except aiosmtplib.SMTPTimeoutError as exc:
            self.timed_out("tls_handshake", exc)
            raise _Stop from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            failure = classify_tls_error(exc) or TlsFailure(TlsFailureKind.HANDSHAKE, _describe(exc))
            await self._tls_failed(failure)
            raise _Stop from None
        self.step("starttls", _Verbatim(response.code, response.message))

    def _plaintext(self, client: aiosmtplib.SMTP) -> bool:
        """The finding for a clear-text connection; True when the password may still be sent."""
        offers = client.supports_extension("starttls")
        allowed = self.ctx.options.allow_plaintext
        self.out.add(
            "smtp.tls.disabled",
            Severity.FAIL,
            "smtp_use_tls is off, so the connection (and the password) would cross the network "
            "unencrypted"
            + ("; the server offers STARTTLS" if offers else "")
            + (
                "; the password was sent in clear text because --allow-plaintext was given."
                if allowed
                else "; inboxcheck did not send the password."
            ),
            fix="Turn smtp_use_tls on (STARTTLS on 587, implicit TLS on 465).",
            host=self.host,
            port=self.port,
            server_offers_starttls=offers,
            credentials_sent=allowed,
        )
        return allowed

    def _tls_session(self, client: aiosmtplib.SMTP) -> None:
        transport = client.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        self.session = session_of(ssl_object)
        if self.session is not None:
            add_session_findings(
                self.out, "smtp", self.session, host=self.host, port=self.port, now=self.ctx.now()
            )

    def _mechanism(self, client: aiosmtplib.SMTP) -> str | None:
        offered = [m.upper() for m in client.server_auth_methods]
        self.out.details["auth_mechanisms"] = list(offered)
        for mechanism in ("PLAIN", "LOGIN"):
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
        elif "XOAUTH2" in offered or "OAUTHBEARER" in offered:
            message = (
                f"The server at {self.where} only accepts OAuth2 logins ({', '.join(offered)}), "
                "not a password."
            )
            fix = "Connect this mailbox with OAuth2 instead of a password."
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
        account = self.ctx.account
        client.timeout = self.ctx.step_timeout()
        try:
            if mechanism == "PLAIN":
                response = await client.auth_plain(
                    account.smtp_username, account.smtp_password.get_secret_value()
                )
            else:
                response = await client.auth_login(
                    account.smtp_username, account.smtp_password.get_secret_value()
                )
        except aiosmtplib.SMTPResponseException as exc:
            self.step(f"auth_{mechanism.lower()}", _Verbatim(exc.code, exc.message))
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
        except aiosmtplib.SMTPTimeoutError as exc:
            self.timed_out("auth", exc)
            return False
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.protocol_error("closed the connection during the login", _describe(exc), stage="auth")
            return False
        except (ValueError, UnicodeError):
            self.out.add(
                "smtp.auth.unsendable",
                Severity.FAIL,
                "The SMTP username or password contains characters that cannot be sent in an SMTP "
                "login (for example a line break).",
                fix="Re-enter the username and password without line breaks or control characters.",
                host=self.host,
                port=self.port,
            )
            return False
        self.step(f"auth_{mechanism.lower()}", _Verbatim(response.code, response.message))
        self.out.details["authenticated_as"] = account.smtp_username
        self.out.details["auth_mechanism"] = mechanism
        return True

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
            transport = client.transport
            return session_of(transport.get_extra_info("ssl_object") if transport else None)
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
    return await _SmtpLogin(ctx).run()


CHECKS = [CheckSpec("smtp.login", "SMTP login", Family.SMTP, check_smtp_login)]
