"""Probing a candidate without a credential: connect, TLS as the candidate says (certificate
verified), the greeting, then EHLO or CAPABILITY: does the server offer a login over TLS?

Nothing secret is ever sent here; the login itself (when a password is given) is the SMTP and IMAP
login checks' job. Replies are read with a line-length cap and every step has the run's step timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext
from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode, host_port
from inboxcheck.checks.login.net import ConnectFailure, ResolveFailure, connect_any, resolve_host
from inboxcheck.checks.login.probe import transport_session
from inboxcheck.checks.login.tls import classify_tls_error
from inboxcheck.discovery.model import ProbeResult

__all__ = ["ProbeOutcome", "probe_endpoint"]

_MAX_LINE: Final = 4096
_MAX_LINES: Final = 100


@dataclass
class ProbeOutcome:
    result: ProbeResult
    reason: str
    evidence: dict[str, JsonValue] = field(default_factory=dict)


class _Refused(Exception):
    """The server answered, but not as the protocol says it should."""


async def probe_endpoint(ctx: CheckContext, endpoint: Endpoint) -> ProbeOutcome:
    """Try ``endpoint`` (its host and port, in its TLS mode), sending no credential."""
    protocol, host, port, tls = endpoint.protocol, endpoint.host, endpoint.port, endpoint.tls
    where = host_port(host, port)
    evidence: dict[str, JsonValue] = {}
    resolution = await resolve_host(ctx, host, port)
    evidence["resolution"] = resolution.evidence()
    if not resolution.addresses:
        if resolution.failure is ResolveFailure.NO_SUCH_NAME:
            return ProbeOutcome(
                ProbeResult.NOT_FOUND, f"{host} has no address ({resolution.detail}).", evidence
            )
        return ProbeOutcome(
            ProbeResult.UNREACHABLE,
            f"{host} could not be resolved right now ({resolution.detail}).",
            evidence,
        )
    connected = await connect_any(ctx, resolution.addresses, port)
    evidence["attempts"] = connected.evidence()
    if connected.sock is None:
        what = {
            ConnectFailure.REFUSED: "refused the connection",
            ConnectFailure.TIMEOUT: "did not answer the connection in time",
        }.get(connected.failure(), "could not be reached")
        return ProbeOutcome(ProbeResult.UNREACHABLE, f"{where} {what}.", evidence)
    tls_context = ctx.ssl_context
    steps: list[JsonValue] = []
    evidence["steps"] = steps
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(ctx.step_timeout() * 3):
            reader, writer = await asyncio.open_connection(
                sock=connected.sock,
                limit=_MAX_LINE,
                ssl=tls_context if tls is TlsMode.IMPLICIT else None,
                server_hostname=host if tls is TlsMode.IMPLICIT else None,
                ssl_handshake_timeout=ctx.step_timeout() if tls is TlsMode.IMPLICIT else None,
            )
            conversation = _Conversation(reader, writer, host, where, tls, tls_context, steps, evidence)
            return await (_smtp if protocol is MailProtocol.SMTP else _imap)(conversation)
    except TimeoutError:
        return ProbeOutcome(ProbeResult.UNREACHABLE, f"{where} stopped answering (timed out).", evidence)
    except _Refused as exc:
        return ProbeOutcome(ProbeResult.PROTOCOL_ERROR, f"{where} {exc}", evidence)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        failure = classify_tls_error(exc)
        if failure is not None:
            evidence["tls_failure"] = {"kind": failure.kind.value, "detail": failure.detail}
            return ProbeOutcome(
                ProbeResult.TLS_FAILED,
                f"TLS with {where} failed ({failure.kind.value.replace('_', ' ')}: {failure.detail}).",
                evidence,
            )
        return ProbeOutcome(
            ProbeResult.UNREACHABLE,
            f"{where} closed or broke the connection ({type(exc).__name__}).",
            evidence,
        )
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await writer.wait_closed()
        else:
            connected.sock.close()


@dataclass
class _Conversation:
    """One probe's connection, and the steps and evidence it records, for either protocol."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    where: str
    tls: TlsMode
    tls_context: ssl.SSLContext
    steps: list[JsonValue]
    evidence: dict[str, JsonValue]

    async def line(self) -> str:
        raw = await self.reader.readline()
        if not raw:
            raise _Refused("closed the connection.")
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.steps.append(f"S: {text[:300]}")
        return text

    async def send(self, text: str) -> None:
        self.steps.append(f"C: {text}")
        self.writer.write(f"{text}\r\n".encode())
        await self.writer.drain()

    async def start_tls(self) -> None:
        await self.writer.start_tls(self.tls_context, server_hostname=self.host)

    def how(self) -> str:
        """How the server answered (encrypted or not), with the TLS session added to the evidence."""
        session = transport_session(self.writer.transport)
        if session is None:
            return "without encryption"
        self.evidence["tls"] = {"version": session.version, "cipher": session.cipher}
        return f"over {session.version}"

    def outcome(self, result: ProbeResult, reason: str) -> ProbeOutcome:
        return ProbeOutcome(result, f"{self.where} {reason}", self.evidence)


async def _smtp_reply(c: _Conversation) -> tuple[int, list[str]]:
    lines: list[str] = []
    for _ in range(_MAX_LINES):
        line = await c.line()
        if len(line) < 3 or not line[:3].isdigit():
            raise _Refused(f"did not answer like an SMTP server ({line[:80]!r}).")
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), lines
    raise _Refused("sent an endless reply.")


async def _smtp(c: _Conversation) -> ProbeOutcome:
    code, _ = await _smtp_reply(c)
    if code != 220:
        raise _Refused(f"greeted with {code} instead of 220.")
    await c.send("EHLO [127.0.0.1]")
    code, lines = await _smtp_reply(c)
    if code != 250:
        raise _Refused(f"answered EHLO with {code}.")
    if c.tls is TlsMode.STARTTLS:
        if not any(line.upper().startswith("STARTTLS") for line in lines):
            return c.outcome(ProbeResult.NO_TLS, "does not offer STARTTLS.")
        await c.send("STARTTLS")
        code, _ = await _smtp_reply(c)
        if code != 220:
            raise _Refused(f"answered STARTTLS with {code}.")
        await c.start_tls()
        await c.send("EHLO [127.0.0.1]")
        code, lines = await _smtp_reply(c)
        if code != 250:
            raise _Refused(f"answered EHLO after STARTTLS with {code}.")
    how = c.how()
    auth = next((line for line in lines if line.upper().startswith(("AUTH ", "AUTH="))), None)
    await c.send("QUIT")
    if c.tls is TlsMode.NONE:
        return c.outcome(ProbeResult.NO_TLS, "answers without encryption.")
    if auth is None:
        return c.outcome(ProbeResult.NO_AUTH, f"answers {how} but offers no AUTH.")
    c.evidence["auth"] = list[JsonValue](auth[5:].split())
    return c.outcome(ProbeResult.AUTH_OFFERED, f"answers {how} and offers AUTH.")


async def _imap_tagged(c: _Conversation, tag: str) -> tuple[str, list[str]]:
    untagged: list[str] = []
    for _ in range(_MAX_LINES):
        line = await c.line()
        if line.startswith(f"{tag} "):
            return line[len(tag) + 1 :], untagged
        untagged.append(line)
    raise _Refused("sent an endless reply.")


def _capabilities(lines: list[str]) -> set[str]:
    caps: set[str] = set()
    for line in lines:
        upper = line.upper()
        if upper.startswith("* CAPABILITY "):
            caps |= set(upper.split()[2:])
    return caps


async def _imap(c: _Conversation) -> ProbeOutcome:
    greeting = await c.line()
    if not greeting.upper().startswith("* OK"):
        raise _Refused(f"did not greet like an IMAP server ({greeting[:80]!r}).")
    if c.tls is TlsMode.STARTTLS:
        await c.send("a1 CAPABILITY")
        status, lines = await _imap_tagged(c, "a1")
        if "STARTTLS" not in _capabilities(lines):
            return c.outcome(ProbeResult.NO_TLS, "does not offer STARTTLS.")
        await c.send("a2 STARTTLS")
        status, _ = await _imap_tagged(c, "a2")
        if not status.upper().startswith("OK"):
            raise _Refused(f"refused STARTTLS ({status[:80]!r}).")
        await c.start_tls()
    await c.send("a3 CAPABILITY")
    status, lines = await _imap_tagged(c, "a3")
    if not status.upper().startswith("OK"):
        raise _Refused(f"refused CAPABILITY ({status[:80]!r}).")
    caps = _capabilities(lines)
    how = c.how()
    await c.send("a4 LOGOUT")
    c.evidence["capabilities"] = list[JsonValue](sorted(caps))
    if c.tls is TlsMode.NONE:
        return c.outcome(ProbeResult.NO_TLS, "answers without encryption.")
    # RFC 9051 6.2.3: LOGIN is always there unless LOGINDISABLED says otherwise.
    if "LOGINDISABLED" in caps and not any(cap.startswith("AUTH=") for cap in caps):
        return c.outcome(ProbeResult.NO_AUTH, f"answers {how} but disables every login.")
    return c.outcome(ProbeResult.AUTH_OFFERED, f"answers {how} and offers a login.")
