"""The shared TLS analysis: the DER certificate reader, error classification, session warnings."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings, strategies as st

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Account, Severity
from inboxcheck._options import CheckOptions
from inboxcheck._presets import load_presets
from inboxcheck.checks.login.tls import (
    CertInfo,
    TlsFailureKind,
    TlsSession,
    add_session_findings,
    classify_tls_error,
    parse_certificate,
    prepare_ssl_context,
)
from tests.helpers import custom_payload

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Test CA")


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_parse_certificate_agrees_with_cryptography(ca: trustme.CA, key_type: trustme.KeyType) -> None:
    leaf = ca.issue_cert(
        "mail.example.test",
        "*.example.test",
        "192.0.2.7",
        "2001:db8::1",
        common_name="mail.example.test",
        not_after=dt.datetime(2031, 5, 6, 7, 8, 9),
        key_type=key_type,
    )
    der = _der(leaf.cert_chain_pems[0].bytes())
    info = parse_certificate(der)
    reference = x509.load_der_x509_certificate(der)
    assert info is not None
    assert info.not_after == reference.not_valid_after_utc
    assert info.not_before == reference.not_valid_before_utc
    san = reference.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(info.dns_names) == san.get_values_for_type(x509.DNSName)
    assert list(info.ip_addresses) == [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert info.subject_cn == "mail.example.test"
    assert info.issuer_cn == "Test CA"
    assert info.self_issued is False
    assert info.days_left(NOW) == (reference.not_valid_after_utc - NOW).days


def test_a_ca_certificate_is_self_issued(ca: trustme.CA) -> None:
    info = parse_certificate(_der(ca.cert_pem.bytes()))
    assert info is not None and info.self_issued is True
    assert info.names() == ["Test CA"]  # no SAN: the subject stands in


def test_utctime_years_follow_rfc5280(ca: trustme.CA) -> None:
    early = ca.issue_cert("a.test", not_before=dt.datetime(1999, 1, 1), not_after=dt.datetime(2049, 12, 31))
    info = parse_certificate(_der(early.cert_chain_pems[0].bytes()))
    assert info is not None
    assert info.not_before.year == 1999 and info.not_after.year == 2049


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_certificate_never_raises_on_junk(data: bytes) -> None:
    parse_certificate(data)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=0, max_value=255))
def test_parse_certificate_never_raises_on_a_corrupted_certificate(position: int, value: int) -> None:
    der = bytearray(_DER_SAMPLE)
    der[position % len(der)] = value
    parse_certificate(bytes(der))
    parse_certificate(bytes(der[: position % len(der)]))


_DER_SAMPLE = _der(trustme.CA().issue_cert("x.test").cert_chain_pems[0].bytes())


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code = code
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (10, TlsFailureKind.EXPIRED),
        (9, TlsFailureKind.NOT_YET_VALID),
        (62, TlsFailureKind.HOSTNAME_MISMATCH),
        (64, TlsFailureKind.HOSTNAME_MISMATCH),
        (18, TlsFailureKind.UNTRUSTED),
        (19, TlsFailureKind.UNTRUSTED),
        (20, TlsFailureKind.UNTRUSTED),
    ],
)
def test_verification_errors_are_classified_through_the_exception_chain(
    code: int, kind: TlsFailureKind
) -> None:
    wrapper = ConnectionError("Error connecting to host")
    wrapper.__cause__ = _verify_error(code, "why")
    failure = classify_tls_error(wrapper)
    assert failure is not None and failure.kind is kind and failure.verify_code == code


def test_other_ssl_errors_are_handshake_failures_and_plain_errors_are_not_tls() -> None:
    failure = classify_tls_error(ssl.SSLError(1, "wrong version number"))
    assert failure is not None and failure.kind is TlsFailureKind.HANDSHAKE
    assert classify_tls_error(ConnectionResetError("reset")) is None


def _info(days: int) -> CertInfo:
    return CertInfo("x", "ca", NOW - dt.timedelta(days=300), NOW + dt.timedelta(days=days, hours=1))


@pytest.mark.parametrize(
    ("version", "days", "codes"),
    [
        ("TLSv1.3", 90, []),
        ("TLSv1.3", 13, ["smtp.tls.cert_expiring"]),
        ("TLSv1.3", 14, []),
        ("TLSv1.1", 90, ["smtp.tls.weak_version"]),
    ],
)
def test_session_warnings(version: str, days: int, codes: list[str]) -> None:
    out = Outcome(summary="")
    add_session_findings(out, "smtp", TlsSession(version, "X", _info(days)), host="h", port=1, now=NOW)
    assert [f.code for f in out.findings] == codes
    assert all(f.severity is Severity.WARN for f in out.findings)


def test_a_certificate_is_read_once_for_every_login_that_presents_it(ca: trustme.CA) -> None:
    der = _der(ca.issue_cert("mail.example.test").cert_chain_pems[0].bytes())
    # Equal bytes from another handshake, not the same object: what getpeercert gives each login.
    assert parse_certificate(der) is parse_certificate(bytes(bytearray(der)))


async def test_a_given_tls_context_is_ready_at_once_without_a_worker_thread() -> None:
    given = ssl.create_default_context()
    ctx = CheckContext.for_account(
        Account.model_validate(custom_payload()),
        options=CheckOptions(),
        presets=load_presets(),
        ssl_context=given,
    )
    future = prepare_ssl_context(ctx)
    assert future.done() and future.result() is given
    assert prepare_ssl_context(ctx) is future
