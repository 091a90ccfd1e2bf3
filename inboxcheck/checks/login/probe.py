"""What the SMTP and the IMAP login checks share: everything but the conversation itself.

:class:`LoginProbe` resolves the host (:func:`~inboxcheck.checks.login.net.resolve_host`), connects to one of
its addresses (:func:`~inboxcheck.checks.login.net.connect_any`), reports an unresolvable host or a failed
connection, and fills the outcome's ``details`` (``tls_mode``, ``resolution``, ``attempts``, ``steps``,
``tls``) and summary. A subclass speaks its protocol through :meth:`LoginProbe._converse_on` and reads
the certificate of a failed handshake through :meth:`LoginProbe._inspect_certificate`; the class
attributes word its findings, whose codes all start with :attr:`LoginProbe.PROTOCOL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from typing import ClassVar, Final, Literal

from pydantic import JsonValue

from inboxcheck._check import RESOURCES_FIX, CheckContext, Outcome
from inboxcheck._credential import CredentialKind
from inboxcheck._endpoint import Endpoint, TlsMode
from inboxcheck._knowledge import Protocol, ReplyMatch, match_reply
from inboxcheck._models import Finding, Severity, finding, host_port
from inboxcheck.checks.login.net import (
    ConnectFailure,
    ResolveFailure,
    connect_any,
    first_line,
    resolve_host,
    tls_answers,
    wait_readable,
)
from inboxcheck.checks.login.same_mailbox import LoginFact, fact_key
from inboxcheck.checks.login.tls import (
    TlsFailure,
    TlsFailureKind,
    TlsSession,
    add_session_findings,
    add_tls_failure,
    inspecting_context,
    prepare_ssl_context,
    session_of,
)

__all__ = ["GREETING_GRACE", "LoginProbe", "Stop", "transport_session"]

#: How long a clear-text greeting may take before the port is asked whether it speaks TLS instead.
GREETING_GRACE: Final = 2.0
# Postfix's postscreen (port 25) blocklists a client that talks before the greeting: a TLS probe
# there would get this machine's address refused. Submission and IMAP ports run no such test.
_NO_PROBE_PORTS: Final = frozenset({25})
_MAX_GREETING_EVIDENCE: Final = 500


class Stop(Exception):
    """Ends the conversation early; the finding is already recorded."""


def transport_session(transport: asyncio.BaseTransport | None) -> TlsSession | None:
    """The TLS session of a transport (None when it is not encrypted)."""
    return session_of(transport.get_extra_info("ssl_object") if transport is not None else None)


class LoginProbe:
    """One run of a login check: the account, the outcome being built, and the conversation's state."""

    #: The finding codes' prefix, the knowledge base's protocol and the login fact's protocol.
    PROTOCOL: ClassVar[Protocol]
    #: The port where the protocol expects TLS from the first byte.
    IMPLICIT_PORT: ClassVar[int]
    #: The account field that turns TLS on.
    TLS_SETTING: ClassVar[str]
    #: Told when the greeting times out on :attr:`IMPLICIT_PORT` with TLS off.
    PLAIN_ON_IMPLICIT_PORT: ClassVar[str]
    #: The fixes for a connection every address refused, or that timed out on every address.
    REFUSED_FIX: ClassVar[str]
    TIMEOUT_FIX: ClassVar[str]
    #: The finding code for a port that speaks the other TLS mode.
    MODE_MISMATCH: ClassVar[str]
    #: What the protocol's clear-text greeting looks like.
    GREETING: ClassVar[re.Pattern[str]]

    def __init__(self, ctx: CheckContext, *, endpoint: Endpoint, username: str) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.host = endpoint.host.strip("[]")
        self.port = endpoint.port
        self.username = username
        self.mode = endpoint.tls
        self.out = Outcome(summary="")
        self.steps: list[JsonValue] = []
        self.scrub = ctx.scrubber
        self.address: str | None = None
        self.session: TlsSession | None = None
        # Started now so that reading the CA store overlaps with resolving and connecting.
        self.tls_ready: asyncio.Future[ssl.SSLContext] = prepare_ssl_context(ctx)
        self.tls_context: ssl.SSLContext | None = None
        # Seconds of the greeting's wait spent before the protocol library takes the socket over.
        self.greeting_waited = 0.0
        # The clear-text finding (its place among the findings, and what it says) until the
        # conversation shows whether a credential crossed: it says only what happened.
        self._clear_text: tuple[int, str, str, str, dict[str, JsonValue]] | None = None
        self.credentials_sent = False

    # --- what a protocol provides ------------------------------------------------------------

    async def _converse_on(self, sock: socket.socket, tls_context: ssl.SSLContext) -> bool:
        """The conversation on a connected socket: True when the login worked."""
        raise NotImplementedError

    async def _inspect_certificate(self, address: str) -> TlsSession | None:
        """Connect again, accepting any certificate, only to read it. No credential is ever sent."""
        raise NotImplementedError

    def port_hint(self) -> str:
        """What the preset knows about this provider's ports, for messages about a failed connect."""
        return ""

    def mode_mismatch_fix(self, observed: Literal["implicit", "plain"]) -> str:
        """The payload change for a port that speaks ``observed`` instead of the configured mode."""
        raise NotImplementedError

    # --- helpers -----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return host_port(self.host, self.port)

    @property
    def preset_id(self) -> str | None:
        return self.ctx.preset.id if self.ctx.preset else None

    @property
    def provider_ids(self) -> tuple[str, ...]:
        """The account's candidate providers (preset ids, most likely first), whose reply rules apply."""
        return tuple(preset.id for preset in self.ctx.candidate_presets)

    def known_reply(
        self,
        reply: str,
        evidence: dict[str, JsonValue],
        *,
        reply_code: int | None = None,
        note: str = "",
        credential: CredentialKind | str = CredentialKind.PASSWORD,
    ) -> bool:
        """Adds the knowledge base's finding for ``reply`` (``note`` follows its message); False when
        it knows none. ``credential`` is what was sent (a rule may be for a password or a token)."""
        match = match_reply(
            self.PROTOCOL, reply, providers=self.provider_ids, reply_code=reply_code, credential=credential
        )
        if match is None:
            return False
        evidence = {**evidence, **self.rule_evidence(match)}
        rule = match.rule
        self.out.add(rule.code, rule.severity, rule.message + note, fix=rule.fix, **evidence)
        return True

    def known_token_reply(
        self, reply: str, evidence: dict[str, JsonValue], *, reply_code: int | None = None
    ) -> bool:
        """:meth:`known_reply` for a refused OAuth2 token: only a rule written for tokens, or a standard
        temporary class ("could not tell"), explains it; a password rule ("check the password") does
        not, and the caller reports the refused token instead."""
        match = match_reply(
            self.PROTOCOL, reply, providers=self.provider_ids, reply_code=reply_code, credential="oauth2"
        )
        if match is None:
            return False
        rule = match.rule
        if rule.credential != "oauth2" and not (rule.standard and rule.severity is Severity.ERROR):
            return False
        evidence = {**evidence, **self.rule_evidence(match)}
        self.out.add(rule.code, rule.severity, rule.message, fix=rule.fix, **evidence)
        return True

    def rule_evidence(self, match: ReplyMatch) -> dict[str, JsonValue]:
        """What a finding from the knowledge base adds to the evidence."""
        return {"rule": match.rule.id}

    def clear_text(self, code: str, unencrypted: str, fix: str, **evidence: JsonValue) -> None:
        """The finding for a login on a connection that is not encrypted; ``unencrypted`` says so. It
        says that no credential was sent until :meth:`sending_credentials` is called."""
        self._clear_text = (len(self.out.findings), code, unencrypted, fix, evidence)
        self.out.findings.append(self._clear_text_finding())

    def sending_credentials(self) -> None:
        """Called just before a credential is written: on a clear-text connection, the finding now
        says that the password crossed unencrypted."""
        self.credentials_sent = True
        if self._clear_text is not None:
            self.out.findings[self._clear_text[0]] = self._clear_text_finding()

    def _clear_text_finding(self) -> Finding:
        assert self._clear_text is not None
        _, code, unencrypted, fix, evidence = self._clear_text
        if self.credentials_sent:
            tail = "; the password was sent in clear text because --allow-plaintext was given."
        elif self.ctx.options.allow_plaintext:
            tail = (
                "; --allow-plaintext was given, but inboxcheck sent no password: the conversation ended "
                "before any login (the next finding says why)."
            )
        else:
            tail = "; inboxcheck did not send the password."
        return finding(
            code,
            Severity.FAIL,
            unencrypted + tail,
            fix=fix,
            **evidence,
            credentials_sent=self.credentials_sent,
        )

    def timed_out(self, stage: str) -> None:
        timeout = self.ctx.options.timeout
        hint = ""
        if stage == "greeting" and self.mode is not TlsMode.IMPLICIT and self.port == self.IMPLICIT_PORT:
            hint = self.PLAIN_ON_IMPLICIT_PORT
        kind = "connect" if stage in ("greeting", "tls_handshake") else "protocol"
        self.out.add(
            f"{self.PROTOCOL}.{kind}.timeout",
            Severity.ERROR,
            f"The server at {self.where} stopped answering during the {stage.replace('_', ' ')} "
            f"(nothing within {timeout:g} s), so inboxcheck could not tell whether the login works.{hint}",
            fix="Check that the port is right and that no firewall drops the traffic, then try again "
            "with a longer --timeout."
            + (f" Turn {self.TLS_SETTING} on for port {self.IMPLICIT_PORT}." if hint else ""),
            host=self.host,
            port=self.port,
            stage=stage,
            timeout_s=timeout,
        )

    def take_session(self, transport: asyncio.BaseTransport | None) -> None:
        """The session the login runs over, and the warnings about it."""
        self.session = transport_session(transport)
        if self.session is not None:
            add_session_findings(
                self.out, self.PROTOCOL, self.session, host=self.host, port=self.port, now=self.ctx.now()
            )

    async def _tls_failed(self, failure: TlsFailure) -> None:
        if failure.kind is TlsFailureKind.HANDSHAKE and self.mode is TlsMode.IMPLICIT:
            greeting = await self._plain_greeting()
            if greeting is not None:
                self._mode_mismatch("plain", greeting=self.scrub(greeting)[:_MAX_GREETING_EVIDENCE])
                return
        cert = None
        if failure.kind is not TlsFailureKind.HANDSHAKE and self.address is not None:
            session = await self._inspect_certificate(self.address)
            cert = session.cert if session else None
        add_tls_failure(
            self.out, self.PROTOCOL, failure, host=self.host, port=self.port, cert=cert, now=self.ctx.now()
        )

    # --- the check ---------------------------------------------------------------------------

    async def run(self) -> Outcome:
        account = self.ctx.account
        credential = account.smtp_credential if self.PROTOCOL == "smtp" else account.imap_credential
        if credential.is_token and not credential.reveal():
            # The token could not be got (the report's oauth.token result says why): nothing to send.
            return Outcome.skip("no OAuth2 access token to log in with (see the OAuth2 token result)")
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
        with contextlib.suppress(Stop):
            logged_in = await self._converse(connected.sock)
        out.details["steps"] = self.steps
        if self.session is not None:
            out.details["tls"] = self.session.evidence(self.ctx.now())
        if logged_in:
            self._record_fact()
            how = f"over {self.session.version}" if self.session else "without encryption"
            out.summary = f"logged in to {self.where} as {self.username} {how}"
        elif not out.summary:
            out.summary = f"could not log in to {self.where}"
        return out

    async def _converse(self, sock: socket.socket) -> bool:
        try:
            self.tls_context = await asyncio.shield(self.tls_ready)
        except BaseException:
            sock.close()
            raise
        try:
            mismatch = self.mode is not TlsMode.IMPLICIT and await self._speaks_implicit_tls(sock)
        except BaseException:
            sock.close()
            raise
        if mismatch:
            sock.close()
            return False
        return await self._converse_on(sock, self.tls_context)

    # --- a port that speaks the other TLS mode (each probe sends a handshake or nothing) ----------

    def greeting_timeout(self) -> float:
        """What is left of the step timeout for the greeting, after the wait and the TLS probe."""
        return max(0.001, self.ctx.step_timeout() - self.greeting_waited)

    def _grace(self) -> float:
        return min(GREETING_GRACE, self.ctx.step_timeout() / 2)

    def _probe_times(self) -> tuple[float, float]:
        """How long to wait for the greeting before the TLS probe, and how long the probe may take.

        On the protocol's implicit-TLS port (465, 993) a clear-text greeting is the exception and a
        silent server is the common mismatch: the probe comes after the grace, so that it is named in
        seconds. On any other port a slow greeting is a working server's right: it is awaited for
        the step timeout, less the end kept for the probe.
        """
        if self.port == self.IMPLICIT_PORT:
            return self._grace(), self._grace()
        allowance = min(GREETING_GRACE, self.ctx.step_timeout() / 4)
        return self.ctx.step_timeout() - allowance, allowance

    async def _speaks_implicit_tls(self, sock: socket.socket) -> bool:
        """True (the finding recorded) when a port configured for a clear-text greeting stays silent
        and answers a TLS handshake instead: both sides would wait for the other.

        The greeting is awaited first (:meth:`_probe_times`): a slow but working server is never sent
        a TLS handshake, which it would log as a syntax error. Only a port that did not greet is
        probed, on a second connection; an answer there in TLS (a session, or a TLS alert refusing
        it) is the mismatch.
        """
        if self.port in _NO_PROBE_PORTS or self.address is None:
            return False
        wait, allowance = self._probe_times()
        started = time.perf_counter()
        try:
            if await wait_readable(sock, wait):
                return False
            connected = await connect_any(self.ctx, (self.address,), self.port)
            if connected.sock is None:
                return False
            answer = await tls_answers(
                connected.sock, inspecting_context(), server_name=self.host, within=allowance
            )
        finally:
            self.greeting_waited = time.perf_counter() - started
        if not answer.speaks_tls:
            return False
        evidence: dict[str, JsonValue] = {"waited_s": round(self.greeting_waited, 2)}
        session = session_of(answer.ssl_object) if answer.ssl_object is not None else None
        if session is not None and session.version:
            evidence["tls_version"] = session.version
        if answer.alert is not None:
            evidence["tls_alert"] = answer.alert
        self._mode_mismatch("implicit", **evidence)
        return True

    async def _plain_greeting(self) -> str | None:
        """The clear-text greeting of the port, when a handshake there failed because it speaks one."""
        if self.address is None:
            return None
        connected = await connect_any(self.ctx, (self.address,), self.port)
        if connected.sock is None:
            return None
        line = await first_line(connected.sock, within=self._grace())
        return line if line is not None and self.GREETING.match(line) else None

    def _mode_mismatch(self, observed: Literal["implicit", "plain"], **evidence: JsonValue) -> None:
        label = self.PROTOCOL.upper()
        if observed == "implicit":
            message = (
                f"The {label} server at {self.where} speaks TLS from the first byte (implicit TLS), but "
                f"the account is set for {'STARTTLS' if self.mode is TlsMode.STARTTLS else 'clear text'} "
                "there: the client waits for a clear-text greeting the server never sends, so every "
                "login would hang until it times out. inboxcheck sent no credentials; it only tried a TLS "
                "handshake on the port."
            )
        else:
            message = (
                f"The {label} server at {self.where} greets in clear text (it expects STARTTLS), but "
                "the account opens TLS from the first byte, so the TLS handshake fails. inboxcheck sent "
                "no credentials."
            )
        self.out.add(
            self.MODE_MISMATCH,
            Severity.FAIL,
            message,
            fix=self.mode_mismatch_fix(observed),
            host=self.host,
            port=self.port,
            configured=self.mode.value,
            observed=observed,
            **evidence,
        )

    def _record_fact(self) -> None:
        self.ctx.logins[self.PROTOCOL] = self.endpoint
        cert = self.session.cert if self.session else None
        self.ctx.facts[fact_key(self.PROTOCOL)] = LoginFact(
            endpoint=self.endpoint,
            username=self.username,
            address=self.address,
            preset_id=self.preset_id,
            cert_names=tuple(cert.names()) if cert else (),
        )

    def _unresolvable(self, failure: ResolveFailure | None, detail: str) -> None:
        if failure is ResolveFailure.LOCAL:
            self.out.add(
                "run.resources",
                Severity.ERROR,
                f"This machine could not look up the {self.PROTOCOL.upper()} host {self.host}: it ran short "
                "of resources (too many open files), a limit of this machine and not the account's fault, "
                "so inboxcheck could not tell whether the login works.",
                fix=RESOURCES_FIX,
                host=self.host,
                detail=detail,
            )
            return
        definite = failure is ResolveFailure.NO_SUCH_NAME
        label = self.PROTOCOL.upper()
        self.out.add(
            f"{self.PROTOCOL}.connect.unresolvable",
            Severity.FAIL if definite else Severity.ERROR,
            f"The {label} host {self.host} does not resolve to any address ({detail})."
            if definite
            else f"The {label} host {self.host} could not be resolved right now ({detail}), so inboxcheck "
            "could not tell whether it works.",
            fix=f"Check the spelling of {self.PROTOCOL}_host against the provider's setup page."
            if definite
            else "Check the DNS servers this machine (or --nameserver) uses, then try again.",
            host=self.host,
            detail=detail,
        )

    def _not_connected(self, failure: ConnectFailure, attempts: list[JsonValue]) -> None:
        hint = self.port_hint()
        if failure is ConnectFailure.LOCAL:
            self.out.add(
                "run.resources",
                Severity.ERROR,
                f"This machine could not open a connection to {self.where}: it ran short of resources "
                "(too many open files), a limit of this machine and not the account's fault, so "
                "inboxcheck could not tell whether the login works.",
                fix=RESOURCES_FIX,
                host=self.host,
                port=self.port,
                attempts=attempts,
            )
            return
        if failure is ConnectFailure.REFUSED:
            # A refusal is a definite answer: the host is up and nothing listens on that port (most
            # often the wrong port), unlike a timeout, which may be a firewall or a slow network.
            code, severity = "refused", Severity.FAIL
            message = (
                f"Nothing listens on {self.where}: every address refused the connection, so this is "
                f"not the port the server takes logins on (or the server is stopped).{hint}"
            )
            fix = self.REFUSED_FIX + hint
        elif failure is ConnectFailure.TIMEOUT:
            code, severity = "timeout", Severity.ERROR
            message = (
                f"Connecting to {self.where} timed out after {self.ctx.options.timeout:g} s on every "
                f"address, so inboxcheck could not tell whether the server works.{hint}"
            )
            fix = self.TIMEOUT_FIX + hint
        else:
            code, severity = "failed", Severity.ERROR
            message = (
                f"No address of {self.host} could be reached on port {self.port} (the network said no "
                "route), so inboxcheck could not tell whether the server works."
            )
            fix = "Check this machine's network connection (IPv6 routes in particular), then try again."
        self.out.add(
            f"{self.PROTOCOL}.connect.{code}",
            severity,
            message,
            fix=fix,
            host=self.host,
            port=self.port,
            attempts=attempts,
        )
