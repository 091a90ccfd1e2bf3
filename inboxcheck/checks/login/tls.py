"""What a TLS handshake showed, shared by the SMTP and IMAP checks.

Verification is always done by OpenSSL through the run's verifying context; this module only explains
the outcome. When verification fails, the checks open a second connection with an *inspecting* context
(no verification, no credential ever sent on it) to fetch the certificate, so the finding can name the
dates and names that made it fail. The certificate is read with the package's DER reader
(:mod:`inboxcheck._der`): only the validity dates, subject, issuer and subjectAltName are needed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._der import DerError, children, read_tlv
from inboxcheck._models import Severity, host_port

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "CertInfo",
    "TlsFailure",
    "TlsFailureKind",
    "TlsSession",
    "add_session_findings",
    "add_tls_failure",
    "classify_tls_error",
    "inspecting_context",
    "parse_certificate",
    "prepare_ssl_context",
    "session_of",
]

EXPIRY_WARNING_DAYS: Final = 14
# Protocol versions below TLS 1.2 are deprecated (RFC 8996).
_WEAK_VERSIONS: Final = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})


# --- the few X.509 fields a finding names (RFC 5280 section 4.1) ----------------------------------


_OID_CN: Final = bytes.fromhex("550403")
_OID_O: Final = bytes.fromhex("55040a")
_OID_SAN: Final = bytes.fromhex("551d11")


def _time(data: bytes, tag: int, start: int, end: int) -> datetime:
    text = data[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: years 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise DerError("not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _common_name(data: bytes, start: int, end: int) -> str | None:
    """The name's commonName, else its organizationName: what a person would call the subject."""
    found: dict[bytes, str] = {}
    for _set_tag, set_start, set_end in children(data, start, end):
        for _seq_tag, seq_start, seq_end in children(data, set_start, set_end):
            parts = children(data, seq_start, seq_end)
            if len(parts) == 2:
                oid = data[parts[0][1] : parts[0][2]]
                found.setdefault(oid, data[parts[1][1] : parts[1][2]].decode("utf-8", "replace"))
    return found.get(_OID_CN) or found.get(_OID_O)


@dataclass(frozen=True)
class CertInfo:
    """The parts of a server certificate a person needs to understand a verification failure."""

    subject_cn: str | None
    issuer_cn: str | None
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    self_issued: bool = False

    def days_left(self, now: datetime) -> int:
        """Whole days until expiry; negative once expired."""
        return int((self.not_after - now).total_seconds() // 86400)

    def names(self) -> list[str]:
        names = [*self.dns_names, *self.ip_addresses]
        if not names and self.subject_cn:
            names.append(self.subject_cn)
        return names

    def evidence(self, now: datetime) -> dict[str, JsonValue]:
        return {
            "cert_subject": self.subject_cn,
            "cert_issuer": self.issuer_cn,
            "cert_names": list(self.names()),
            "cert_not_before": self.not_before.isoformat(),
            "cert_not_after": self.not_after.isoformat(),
            "days_to_expiry": self.days_left(now),
            "self_signed": self.self_issued,
        }


# Every login to one server presents the same certificate: a batch reads it once (its dates alone
# cost two strptime calls), not once per login. CertInfo is immutable, so sharing it is safe.
@functools.lru_cache(maxsize=256)
def parse_certificate(der: bytes) -> CertInfo | None:
    """Read a DER certificate's names and dates; None when it is not one (never raises)."""
    try:
        return _parse(der)
    except (DerError, ValueError, IndexError, UnicodeError):
        return None


def _parse(der: bytes) -> CertInfo:
    _tag, start, end = read_tlv(der, 0)
    tbs_tag, tbs_start, tbs_end = children(der, start, end)[0]
    if tbs_tag != 0x30:
        raise DerError("no TBSCertificate")
    fields = children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional parts
    if len(fields) < 6:
        raise DerError("short TBSCertificate")
    issuer, validity, subject = fields[2], fields[3], fields[4]
    times = children(der, validity[1], validity[2])
    if len(times) != 2:
        raise DerError("bad validity")
    not_before = _time(der, *times[0])
    not_after = _time(der, *times[1])
    dns_names: list[str] = []
    ips: list[str] = []
    for tag, ext_start, ext_end in fields[6:]:
        if tag != 0xA3:
            continue
        (_seq, seq_start, seq_end), *_ = children(der, ext_start, ext_end)
        for _ext_tag, e_start, e_end in children(der, seq_start, seq_end):
            parts = children(der, e_start, e_end)
            if not parts or der[parts[0][1] : parts[0][2]] != _OID_SAN:
                continue
            octets = parts[-1]
            _san_tag, san_start, san_end = read_tlv(der, octets[1])
            for name_tag, n_start, n_end in children(der, san_start, san_end):
                value = der[n_start:n_end]
                if name_tag == 0x82:
                    dns_names.append(value.decode("ascii", "replace"))
                elif name_tag == 0x87 and len(value) in (4, 16):
                    ips.append(str(ipaddress.ip_address(value)))
    return CertInfo(
        subject_cn=_common_name(der, subject[1], subject[2]),
        issuer_cn=_common_name(der, issuer[1], issuer[2]),
        not_before=not_before,
        not_after=not_after,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ips),
        self_issued=der[issuer[1] : issuer[2]] == der[subject[1] : subject[2]],
    )


# --- the verifying context ------------------------------------------------------------------------

_CONTEXT_FACT: Final = "tls.ssl_context"


def prepare_ssl_context(ctx: CheckContext) -> asyncio.Future[ssl.SSLContext]:
    """The run's verifying context, built once in a worker thread; both logins await the same one.

    Building it reads the system CA store: 25-35 ms of CPU on the CI machine, a third of a whole
    run against servers on loopback. OpenSSL releases the GIL meanwhile, so in a thread it overlaps
    with the DNS lookups and TCP connects instead of stalling the event loop (see bench/README.md).
    """
    future: asyncio.Future[ssl.SSLContext] | None = ctx.facts.get(_CONTEXT_FACT)
    if future is None:
        if ctx.has_ssl_context:
            # Given (a batch shares one): a trip through a worker thread would only cost a wake-up.
            future = asyncio.get_running_loop().create_future()
            future.set_result(ctx.ssl_context)
        else:
            future = ctx.start(asyncio.to_thread(lambda: ctx.ssl_context))
        ctx.facts[_CONTEXT_FACT] = future
    return future


# --- what a handshake showed --------------------------------------------------------------------


@dataclass(frozen=True)
class TlsSession:
    """A completed handshake: protocol version, cipher and the server's certificate."""

    version: str | None
    cipher: str | None
    cert: CertInfo | None

    def evidence(self, now: datetime) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"tls_version": self.version, "tls_cipher": self.cipher}
        if self.cert is not None:
            out.update(self.cert.evidence(now))
        return out


def session_of(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsSession | None:
    """The session of a TLS transport's ``ssl_object`` extra info (None when not encrypted)."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    der = ssl_object.getpeercert(binary_form=True)
    return TlsSession(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        cert=parse_certificate(der) if der else None,
    )


def inspecting_context() -> ssl.SSLContext:
    """A context that accepts any certificate, used only to *read* one after verification failed.

    Nothing but the handshake happens on a connection made with it: no login, no command.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class TlsFailureKind(StrEnum):
    """Why a handshake did not give a trusted connection; each has its finding code suffix."""

    UNTRUSTED = "cert_untrusted"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "cert_expired"
    NOT_YET_VALID = "cert_not_yet_valid"
    HANDSHAKE = "handshake_failed"


# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h).
_EXPIRED_CODES: Final = {10}
_NOT_YET_VALID_CODES: Final = {9}
_NAME_CODES: Final = {62, 63, 64}


@dataclass(frozen=True)
class TlsFailure:
    kind: TlsFailureKind
    detail: str
    verify_code: int | None = None


def classify_tls_error(exc: BaseException) -> TlsFailure | None:
    """The TLS failure behind ``exc`` (looking through ``__cause__``/``__context__``), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            # Attributes set by OpenSSL's glue; an instance raised from Python code may lack them.
            code = getattr(current, "verify_code", None)
            message = (
                getattr(current, "verify_message", None) or getattr(current, "reason", None) or str(current)
            )
            if code in _EXPIRED_CODES:
                kind = TlsFailureKind.EXPIRED
            elif code in _NOT_YET_VALID_CODES:
                kind = TlsFailureKind.NOT_YET_VALID
            elif code in _NAME_CODES:
                kind = TlsFailureKind.HOSTNAME_MISMATCH
            else:
                kind = TlsFailureKind.UNTRUSTED
            return TlsFailure(kind, str(message), code)
        if isinstance(current, ssl.SSLError):
            reason = getattr(current, "reason", None) or current.strerror or str(current)
            return TlsFailure(TlsFailureKind.HANDSHAKE, str(reason))
        current = current.__cause__ or current.__context__
    return None


def add_tls_failure(
    out: Outcome,
    protocol: str,
    failure: TlsFailure,
    *,
    host: str,
    port: int,
    cert: CertInfo | None,
    now: datetime,
) -> None:
    """The finding for a handshake that did not give a trusted connection. Nothing was sent on it."""
    label = protocol.upper()
    where = host_port(host, port)
    evidence: dict[str, JsonValue] = {"host": host, "port": port, "tls_error": failure.detail}
    if failure.verify_code is not None:
        evidence["verify_code"] = failure.verify_code
    if cert is not None:
        evidence.update(cert.evidence(now))
    not_sent = "so inboxcheck sent no credentials."
    code = f"{protocol}.tls.{failure.kind.value}"
    if failure.kind is TlsFailureKind.EXPIRED:
        when = f" on {cert.not_after:%Y-%m-%d}, {-cert.days_left(now)} days ago" if cert else ""
        out.add(
            code,
            Severity.FAIL,
            f"The {label} server at {where} presents a certificate that expired{when}, {not_sent}",
            fix="The mail server's operator must renew the certificate (and reload the server); mail "
            "clients, the platform included, refuse an expired certificate.",
            **evidence,
        )
    elif failure.kind is TlsFailureKind.NOT_YET_VALID:
        when = f" until {cert.not_before:%Y-%m-%d}" if cert else ""
        out.add(
            code,
            Severity.FAIL,
            f"The {label} server at {where} presents a certificate that is not valid yet{when}, {not_sent}",
            fix="Check the clock of the machine running inboxcheck, then ask the server's operator "
            "to install a certificate that is valid now.",
            **evidence,
        )
    elif failure.kind is TlsFailureKind.HOSTNAME_MISMATCH:
        names = ", ".join(cert.names()) if cert else "other names"
        out.add(
            code,
            Severity.FAIL,
            f"The {label} server at {where} presents a certificate for {names}, not for {host}, {not_sent}",
            fix=f"Use the host name the certificate is made for as {protocol}_host, or have the "
            f"server's operator add {host} to the certificate.",
            **evidence,
        )
    elif failure.kind is TlsFailureKind.UNTRUSTED:
        if cert is not None and cert.self_issued:
            why = "a self-signed certificate"
        else:
            issuer = f" (issued by {cert.issuer_cn})" if cert and cert.issuer_cn else ""
            why = f"a certificate from an authority this machine does not trust{issuer}"
        out.add(
            code,
            Severity.FAIL,
            f"The {label} server at {where} presents {why}, {not_sent}",
            fix="The server's operator should install a certificate from a public authority (for "
            "example Let's Encrypt). If this is a private test server, pass its CA with --ca-file.",
            **evidence,
        )
    else:
        out.add(
            code,
            Severity.FAIL,
            f"The TLS handshake with the {label} server at {where} failed ({failure.detail}), {not_sent}",
            fix="Check that the port speaks TLS the way the account says (implicit TLS on 465/993, "
            "STARTTLS on 587/143) and that the server supports TLS 1.2 or newer.",
            **evidence,
        )


def add_session_findings(
    out: Outcome, protocol: str, session: TlsSession, *, host: str, port: int, now: datetime
) -> None:
    """Warnings about a trusted session: a certificate close to expiry, an old protocol version."""
    label = protocol.upper()
    evidence: dict[str, JsonValue] = {"host": host, "port": port, **session.evidence(now)}
    if session.cert is not None:
        days = session.cert.days_left(now)
        if days < EXPIRY_WARNING_DAYS:
            out.add(
                f"{protocol}.tls.cert_expiring",
                Severity.WARN,
                f"The {label} server's certificate expires in {days} days "
                f"({session.cert.not_after:%Y-%m-%d}); once it does, every login will fail.",
                fix="Ask the server's operator to renew the certificate now (automatic renewal "
                "usually starts 30 days before expiry, so this one is not renewing).",
                **evidence,
            )
    if session.version in _WEAK_VERSIONS:
        out.add(
            f"{protocol}.tls.weak_version",
            Severity.WARN,
            f"The {label} server negotiated {session.version}, which is deprecated; clients are "
            "dropping support for anything below TLS 1.2.",
            fix="Ask the server's operator to enable TLS 1.2 and 1.3.",
            **evidence,
        )
