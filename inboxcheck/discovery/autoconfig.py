"""Thunderbird's autoconfig (``config-v1.1.xml``): fetched over verified HTTPS only, size- and
time-bounded, and parsed with defusedxml (no DTD, no entities, no external references).

Plain HTTP is never asked: a file anyone on the path can rewrite must not choose where a password
goes. A file that is too large, too slow, not XML, or declares a DTD (an "XML bomb") is reported
and ignored.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode
from inboxcheck._models import _check_host

if TYPE_CHECKING:
    from inboxcheck._check import CheckContext

__all__ = [
    "AUTOCONFIG_PATH",
    "MAX_BYTES",
    "WELL_KNOWN_PATH",
    "AutoconfigEndpoint",
    "AutoconfigError",
    "FetchResult",
    "autoconfig_urls",
    "fetch_autoconfig",
    "parse_autoconfig",
]

AUTOCONFIG_PATH: Final = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH: Final = "/.well-known/autoconfig/mail/config-v1.1.xml"
#: Real files are a few kilobytes; anything past this is not a mail client's configuration.
MAX_BYTES: Final = 100_000
_SOCKET_TYPES: Final = {"SSL": TlsMode.IMPLICIT, "STARTTLS": TlsMode.STARTTLS, "plain": TlsMode.NONE}


class AutoconfigError(ValueError):
    """A file that cannot be used; ``kind`` is the finding's last part."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class AutoconfigEndpoint:
    """One server of the file: the endpoint, the username it names, and its place in the file."""

    endpoint: Endpoint
    username: str | None
    order: int


def _fill(template: str, address: str) -> str:
    local, _, domain = address.partition("@")
    return (
        template.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
    )


def parse_autoconfig(body: bytes, address: str) -> list[AutoconfigEndpoint]:
    """The SMTP and IMAP servers of a ``config-v1.1.xml`` document, placeholders filled.

    Raises :class:`AutoconfigError` for a document that declares a DTD or entities (``forbidden``),
    is not well-formed or not an autoconfig file (``malformed``). Servers with a bad host name, port
    or socket type are skipped; POP3 and other server types are ignored.
    """
    import defusedxml
    import defusedxml.ElementTree

    if len(body) > MAX_BYTES:
        raise AutoconfigError("too_large", f"the file has {len(body):,} bytes, over {MAX_BYTES:,}")
    try:
        root = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise AutoconfigError(
            "forbidden", f"the file declares a DTD or entities ({type(exc).__name__}); refused unread"
        ) from None
    except (SyntaxError, ValueError) as exc:
        # SyntaxError: ElementTree's ParseError, of whichever copy of ElementTree defusedxml uses
        # (before 0.8 it loads a pure-Python one of its own, whose ParseError is another class).
        raise AutoconfigError("malformed", f"not well-formed XML: {exc}") from None
    if root.tag != "clientConfig":
        raise AutoconfigError("malformed", f"the root element is <{root.tag}>, not <clientConfig>")
    endpoints: list[AutoconfigEndpoint] = []
    for order, server in enumerate(root.iterfind("./emailProvider/*")):
        if server.tag == "incomingServer" and server.get("type") == "imap":
            protocol = MailProtocol.IMAP
        elif server.tag == "outgoingServer" and server.get("type") == "smtp":
            protocol = MailProtocol.SMTP
        else:
            continue
        host = _fill((server.findtext("hostname") or "").strip(), address)
        port_text = (server.findtext("port") or "").strip()
        tls = _SOCKET_TYPES.get((server.findtext("socketType") or "").strip())
        username = server.findtext("username")
        # isascii: str.isdigit() is also true for "²" and other digits int() refuses.
        if (
            not (port_text.isascii() and port_text.isdigit())
            or not 1 <= int(port_text) <= 65535
            or tls is None
        ):
            continue
        try:
            _check_host(host)
        except ValueError:
            continue
        if "." not in host.strip("."):
            continue  # a single label is no server on the Internet (and never a mail provider's)
        endpoints.append(
            AutoconfigEndpoint(
                Endpoint(protocol=protocol, host=host.lower().rstrip("."), port=int(port_text), tls=tls),
                _fill(username.strip(), address) if username and username.strip() else None,
                order,
            )
        )
    return endpoints


def autoconfig_urls(domain: str, address: str) -> list[tuple[str, str]]:
    """Thunderbird's two locations for ``domain``: (host, path with query)."""
    return [
        (f"autoconfig.{domain}", f"{AUTOCONFIG_PATH}?emailaddress={quote(address, safe='@')}"),
        (domain, WELL_KNOWN_PATH),
    ]


@dataclass
class FetchResult:
    """What one URL gave: a body, or why not (``kind``: not_found, tls, timeout, too_large, failed)."""

    url: str
    body: bytes | None = None
    kind: str | None = None
    detail: str = ""
    evidence: dict[str, str | int] = field(default_factory=dict)


async def fetch_autoconfig(
    ctx: CheckContext, host: str, path: str, *, port: int | None, ssl_context: ssl.SSLContext
) -> FetchResult:
    """GET ``https://host[:port]path`` with the certificate verified for ``host``.

    The name is resolved like every host inboxcheck connects to (through ``--nameserver`` when
    given), the request goes to that address with ``host`` as TLS server name and Host header, so the
    certificate is checked against the name. Redirects are not followed. The body is read in chunks
    and abandoned past :data:`MAX_BYTES`; the whole fetch has one step timeout.
    """
    import httpx

    from inboxcheck.checks.login.net import ResolveFailure, resolve_host
    from inboxcheck.checks.login.tls import classify_tls_error

    https_port = port or 443
    shown_port = f":{https_port}" if https_port != 443 else ""
    url = f"https://{host}{shown_port}{path}"
    result = FetchResult(url)
    resolution = await resolve_host(ctx, host, https_port)
    if not resolution.addresses:
        definite = resolution.failure is ResolveFailure.NO_SUCH_NAME
        result.kind = "not_found" if definite else "failed"
        result.detail = f"{host} has no address ({resolution.detail})"
        return result
    address = resolution.addresses[0]
    literal = f"[{address}]" if ":" in address else address
    timeout = ctx.step_timeout()
    try:
        # httpx's own timeouts end a stalled connect or read cleanly; the outer one bounds the whole
        # fetch (a server dripping a byte at a time never trips a per-read timeout).
        async with (
            asyncio.timeout(timeout * 1.5),
            httpx.AsyncClient(
                verify=ssl_context, follow_redirects=False, trust_env=False, timeout=timeout
            ) as client,
            client.stream(
                "GET",
                f"https://{literal}:{https_port}{path}",
                headers={"Host": f"{host}{shown_port}", "Accept": "application/xml, text/xml"},
                extensions={"sni_hostname": host},
            ) as response,
        ):
            result.evidence = {"status": response.status_code, "address": address}
            if response.status_code != 200:
                result.kind = "not_found"
                result.detail = f"HTTP {response.status_code}"
                return result
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BYTES:
                result.kind = "too_large"
                result.detail = f"the server announced {int(declared):,} bytes, over {MAX_BYTES:,}"
                return result
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > MAX_BYTES:
                    result.kind = "too_large"
                    result.detail = f"over {MAX_BYTES:,} bytes; stopped reading"
                    return result
                chunks.append(chunk)
            result.body = b"".join(chunks)
            return result
    except (TimeoutError, httpx.TimeoutException):
        result.kind = "timeout"
        result.detail = f"the file did not arrive within {timeout * 1.5:g} s"
    except httpx.HTTPError as exc:
        failure = classify_tls_error(exc)
        if failure is not None:
            result.kind = "tls"
            result.detail = f"TLS failed ({failure.kind.value}): {failure.detail}"
        else:
            result.kind = "failed"
            result.detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return result
