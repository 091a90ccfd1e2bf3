"""Throwaway certificates for the lab, made fresh at every start and never committed.

Four server certificates exist so that inboxcheck's TLS diagnostics can be tested against real
handshakes: a good one, an expired one and a wrong-name one (all three issued by the lab CA) and a
self-signed one; a fifth, from the lab CA, is the web server's (the autoconfig names). Extensions
follow what strict verifiers (Python 3.13's ``VERIFY_X509_STRICT``) demand: basicConstraints,
keyUsage, extendedKeyUsage, SAN, AKI and SKI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Mail hosts of the settings-discovery domains (fixtures/zones): SRV and autoconfig point there.
DISCOVERY_MAIL_HOSTS = (
    "mail.unsigned.test",
    "mail.srv-inside.test",
    "mail.elsewhere.test",
    "mail.srv-disagree.test",
    "mail.srv-none.test",
)
#: Names every usable lab server certificate carries.
GOOD_DNS_NAMES = (
    "mail.lab.test",
    "smtp.lab.test",
    "imap.lab.test",
    "*.lab.test",
    "localhost",
    *DISCOVERY_MAIL_HOSTS,
)
GOOD_IP_ADDRESSES = ("127.0.0.1", "127.0.0.2")
#: The only name in the wrong-name certificate: no lab host matches it.
WRONG_DNS_NAME = "other.invalid-name.test"

_KEY_SIZE = 2048
_ONE_DAY = dt.timedelta(days=1)
# Like a public CA's 90 days: far enough from expiry that no check warns about it.
_LEAF_LIFETIME = dt.timedelta(days=90)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its private key, both on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class LabCerts:
    """Every certificate the lab uses, keyed by the role it plays."""

    ca_file: Path
    good: CertPair
    expired: CertPair
    selfsigned: CertPair
    wrongname: CertPair
    web: CertPair

    def by_name(self, name: str) -> CertPair:
        """Look up a certificate by role name (``good``, ``expired``, ...)."""
        pairs = {
            "good": self.good,
            "expired": self.expired,
            "selfsigned": self.selfsigned,
            "wrongname": self.wrongname,
            "web": self.web,
        }
        return pairs[name]


def make_lab_certs(directory: Path, *, web_names: tuple[str, ...] = ()) -> LabCerts:
    """Create the CA and the server certificates under ``directory``; the web server's names
    ``web_names`` (plus ``localhost`` and 127.0.0.1).

    One RSA key serves all CA-issued leaves: key generation dominates the cost and the tests only
    care about what the certificates say, not about key separation.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key = _new_key()
    ca_cert = _ca_certificate(ca_key, now)
    leaf_key = _new_key()
    self_key = _new_key()

    ca_file = directory / "ca.pem"
    _write_cert(ca_file, ca_cert)
    _write_key(directory / "ca.key", ca_key)

    good = _leaf(
        leaf_key,
        ca_cert,
        ca_key,
        _names(GOOD_DNS_NAMES, GOOD_IP_ADDRESSES),
        not_before=now - _ONE_DAY,
        not_after=now + _LEAF_LIFETIME,
    )
    expired = _leaf(
        leaf_key,
        ca_cert,
        ca_key,
        _names(GOOD_DNS_NAMES, GOOD_IP_ADDRESSES),
        not_before=now - dt.timedelta(days=60),
        not_after=now - dt.timedelta(days=30),
    )
    wrong = _leaf(
        leaf_key,
        ca_cert,
        ca_key,
        _names((WRONG_DNS_NAME,), ()),
        not_before=now - _ONE_DAY,
        not_after=now + _LEAF_LIFETIME,
    )
    selfsigned = _self_signed(self_key, now)
    web = _leaf(
        leaf_key,
        ca_cert,
        ca_key,
        _names((*web_names, "localhost"), ("127.0.0.1",)),
        not_before=now - _ONE_DAY,
        not_after=now + _LEAF_LIFETIME,
    )

    return LabCerts(
        ca_file=ca_file,
        good=_save_pair(directory, "good", good, leaf_key),
        expired=_save_pair(directory, "expired", expired, leaf_key),
        selfsigned=_save_pair(directory, "selfsigned", selfsigned, self_key),
        wrongname=_save_pair(directory, "wrongname", wrong, leaf_key),
        web=_save_pair(directory, "web", web, leaf_key),
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _names(dns_names: tuple[str, ...], ips: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return names


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inboxcheck lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(key: rsa.RSAPrivateKey, now: dt.datetime) -> x509.Certificate:
    """A CA valid well before the expired leaf's window, so only the leaf is "expired"."""
    name = _subject("inboxcheck lab CA")
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _leaf(
    key: rsa.RSAPrivateKey,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    names: list[x509.GeneralName],
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    first = names[0]
    common_name = str(first.value)
    builder = _leaf_builder(key, _subject(common_name), names, not_before, not_after)
    builder = builder.issuer_name(issuer.subject).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
        critical=False,
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _self_signed(key: rsa.RSAPrivateKey, now: dt.datetime) -> x509.Certificate:
    name = _subject("mail.lab.test")
    names = _names(GOOD_DNS_NAMES, GOOD_IP_ADDRESSES)
    builder = _leaf_builder(key, name, names, now - _ONE_DAY, now + _LEAF_LIFETIME)
    builder = builder.issuer_name(name).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return builder.sign(key, hashes.SHA256())


def _leaf_builder(
    key: rsa.RSAPrivateKey,
    subject: x509.Name,
    names: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _save_pair(
    directory: Path,
    stem: str,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> CertPair:
    """Write the leaf and its key; servers send the leaf alone (the CA is the trust anchor)."""
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return CertPair(cert=cert_path, key=key_path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """Keys stay root-only: Postfix and Dovecot read them before dropping privileges."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(data)
