"""Finding a server and opening a TCP connection to it, with every attempt kept as evidence.

The SMTP and IMAP checks resolve the host themselves (through the run's DNS client when
``--nameserver`` is given, else through the system's resolver) and connect to each address in turn,
so that a report can say which addresses were tried and what each one did. They then hand the
connected socket to the protocol library, with the host *name* as the TLS server name: the
certificate is checked against the name the account uses, not against the address it resolved to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import JsonValue

from inboxcheck._check import LOCAL_SHORTAGE, CheckContext

__all__ = [
    "LOCAL_SHORTAGE",
    "Attempt",
    "ConnectFailure",
    "Connected",
    "Resolution",
    "ResolveFailure",
    "TlsAnswer",
    "connect_any",
    "first_line",
    "local_address_literal",
    "resolve_host",
    "tls_answers",
    "wait_readable",
]


class ResolveFailure(StrEnum):
    """Why a host name gave no address."""

    NO_SUCH_NAME = "no_such_name"  # a definite answer: the name has no address
    TEMPORARY = "temporary"  # could not tell: a timeout, SERVFAIL, a resolver error
    #: This machine ran short (too many open files) while asking: nothing about the name.
    LOCAL = "local_resources"


@dataclass(frozen=True)
class Resolution:
    """The addresses a host name resolved to, or why there are none."""

    host: str
    addresses: tuple[str, ...] = ()
    failure: ResolveFailure | None = None
    detail: str = ""
    via: str = "system"

    def evidence(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {
            "host": self.host,
            "addresses": list(self.addresses),
            "resolver": self.via,
        }
        if self.detail:
            out["resolver_detail"] = self.detail
        return out


class ConnectFailure(StrEnum):
    """How one connection attempt ended, when it did not connect."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    OTHER = "other"
    #: This machine ran short (too many open files, no buffer space): nothing about the server.
    LOCAL = "local_resources"


@dataclass(frozen=True)
class Attempt:
    """One address tried: connected, or why not."""

    address: str
    port: int
    failure: ConnectFailure | None = None
    detail: str = ""

    def as_json(self) -> dict[str, JsonValue]:
        result = "connected" if self.failure is None else self.failure.value
        out: dict[str, JsonValue] = {"address": self.address, "port": self.port, "result": result}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Connected:
    """The outcome of :func:`connect_any`: a connected socket (or None) and every attempt made."""

    sock: socket.socket | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def address(self) -> str | None:
        return self.attempts[-1].address if self.sock is not None and self.attempts else None

    def failure(self) -> ConnectFailure:
        """The failure that best describes why no address connected."""
        kinds = {attempt.failure for attempt in self.attempts}
        for kind in (
            ConnectFailure.LOCAL,
            ConnectFailure.TIMEOUT,
            ConnectFailure.UNREACHABLE,
            ConnectFailure.OTHER,
        ):
            if kind in kinds:
                return kind
        return ConnectFailure.REFUSED

    def evidence(self) -> list[JsonValue]:
        return [attempt.as_json() for attempt in self.attempts]


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def resolve_host(ctx: CheckContext, host: str, port: int) -> Resolution:
    """Every address of ``host``, IPv4 first, each once.

    With ``--nameserver`` the run's DNS client answers (the same servers the DNS checks ask); otherwise
    the system's resolver does, as the mail client on the platform would.
    """
    literal = _ip_literal(host)
    if literal is not None:
        return Resolution(host, (literal,), via="literal")
    if ctx.options.nameservers:
        return await _resolve_with_dns(ctx, host)
    return await _resolve_with_system(ctx, host, port)


async def _resolve_with_dns(ctx: CheckContext, host: str) -> Resolution:
    via = ", ".join(str(ns) for ns in ctx.options.nameservers)
    # Imported here: only a run with --nameserver resolves through the DNS client (and loads it).
    from inboxcheck.checks.dns.lookups import Lookups
    from inboxcheck.dns.client import DnsStatus

    answers = [lookup.answer for lookup in await Lookups(ctx).addresses(host)]
    addresses: list[str] = []
    for answer in answers:
        if answer.ok:
            addresses.extend(answer.records())
    if addresses:
        return Resolution(host, tuple(dict.fromkeys(addresses)), via=via)
    if all(answer.definite for answer in answers):
        return Resolution(
            host,
            failure=ResolveFailure.NO_SUCH_NAME,
            detail="; ".join(a.describe() for a in answers),
            via=via,
        )
    short = any(answer.status is DnsStatus.RESOURCES for answer in answers)
    return Resolution(
        host,
        failure=ResolveFailure.LOCAL if short else ResolveFailure.TEMPORARY,
        detail="; ".join(a.describe() for a in answers),
        via=via,
    )


# getaddrinfo errors that are a definite "this name has no address".
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


async def _resolve_with_system(ctx: CheckContext, host: str, port: int) -> Resolution:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(ctx.step_timeout()):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except TimeoutError:
        return Resolution(
            host, failure=ResolveFailure.TEMPORARY, detail=f"no answer within {ctx.step_timeout():g} s"
        )
    except socket.gaierror as exc:
        kind = ResolveFailure.NO_SUCH_NAME if exc.errno in _NO_SUCH_NAME else ResolveFailure.TEMPORARY
        return Resolution(host, failure=kind, detail=exc.strerror or str(exc))
    except (OSError, UnicodeError) as exc:
        short = isinstance(exc, OSError) and exc.errno in LOCAL_SHORTAGE
        kind = ResolveFailure.LOCAL if short else ResolveFailure.TEMPORARY
        return Resolution(host, failure=kind, detail=str(exc) or type(exc).__name__)
    families = sorted(infos, key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in families))
    if not addresses:
        return Resolution(host, failure=ResolveFailure.NO_SUCH_NAME, detail="no address returned")
    return Resolution(host, addresses)


_REFUSED = {errno.ECONNREFUSED}
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


async def connect_any(ctx: CheckContext, addresses: tuple[str, ...], port: int) -> Connected:
    """Connect to the first address that accepts, trying them in order; each gets one step timeout.

    The caller owns the returned socket and must close it (or hand it to a transport) on every path.
    """
    result = Connected(None)
    loop = asyncio.get_running_loop()
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            kind = ConnectFailure.LOCAL if exc.errno in LOCAL_SHORTAGE else ConnectFailure.UNREACHABLE
            result.attempts.append(Attempt(address, port, kind, exc.strerror or str(exc)))
            continue
        sock.setblocking(False)
        timeout = ctx.step_timeout()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (address, port))
        except TimeoutError:
            sock.close()
            result.attempts.append(
                Attempt(address, port, ConnectFailure.TIMEOUT, f"no answer within {timeout:g} s")
            )
            continue
        except OSError as exc:
            sock.close()
            if exc.errno in LOCAL_SHORTAGE:
                kind = ConnectFailure.LOCAL
            elif exc.errno in _REFUSED:
                kind = ConnectFailure.REFUSED
            elif exc.errno in _UNREACHABLE:
                kind = ConnectFailure.UNREACHABLE
            else:
                kind = ConnectFailure.OTHER
            result.attempts.append(Attempt(address, port, kind, exc.strerror or str(exc)))
            continue
        except BaseException:
            sock.close()
            raise
        result.sock = sock
        result.attempts.append(Attempt(address, port))
        return result
    return result


def local_address_literal(sock: socket.socket) -> str:
    """The EHLO argument: the client's own address as an RFC 5321 address literal.

    Not ``socket.getfqdn()``, which can block on a slow reverse lookup and names a host the server
    cannot verify anyway.
    """
    with contextlib.suppress(OSError):
        host = str(sock.getsockname()[0])
        return f"[IPv6:{host}]" if ":" in host else f"[{host}]"
    return "[127.0.0.1]"


async def wait_readable(sock: socket.socket, within: float) -> bool:
    """Whether ``sock`` has something to read (data, or the peer's close) within ``within`` seconds.

    Nothing is read: the bytes stay for the protocol library the socket is handed to next.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        async with asyncio.timeout(within):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(sock.fileno())


@dataclass(frozen=True)
class TlsAnswer:
    """What a TLS handshake on a port got: the session (``ssl_object``), or the TLS alert the peer
    refused it with (``alert``: the peer speaks TLS all the same), or neither (no TLS there)."""

    ssl_object: ssl.SSLObject | None = None
    alert: str | None = None

    @property
    def speaks_tls(self) -> bool:
        return self.ssl_object is not None or self.alert is not None


async def tls_answers(
    sock: socket.socket, context: ssl.SSLContext, *, server_name: str, within: float
) -> TlsAnswer:
    """Run a TLS handshake on ``sock`` (which this call owns and closes) and nothing else.

    The answer holds the handshake's TLS object (its version and certificate are readable after the
    close), or the alert a TLS server refused the handshake with; neither when the peer does not
    answer like TLS within ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(within):
            transport, _ = await loop.create_connection(
                asyncio.Protocol,
                sock=sock,
                ssl=context,
                # An address is no server name: "" sends no SNI (the context checks no name anyway).
                server_hostname=server_name if _ip_literal(server_name) is None else "",
                ssl_handshake_timeout=within,
            )
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        return TlsAnswer(ssl_object)
    except ssl.SSLError as exc:
        # OpenSSL names an alert received from the peer "...ALERT..." (TLSV1_ALERT_PROTOCOL_VERSION,
        # SSLV3_ALERT_HANDSHAKE_FAILURE): a TLS record came back, so the port speaks TLS.
        reason = exc.reason or ""
        return TlsAnswer(alert=reason.lower()) if "ALERT" in reason else TlsAnswer()
    except (OSError, TimeoutError, ValueError):
        return TlsAnswer()
    finally:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        sock.close()


async def first_line(sock: socket.socket, *, within: float, limit: int = 4096) -> str | None:
    """The first line ``sock`` (which this call owns and closes) receives without sending anything,
    or None when none comes within ``within`` seconds."""
    writer = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
            line = await reader.readline()
    except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
        return None
    finally:
        if writer is not None:
            writer.transport.abort()
        sock.close()
    return line.decode("utf-8", "replace").rstrip("\r\n") if line else None
