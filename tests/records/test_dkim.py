"""DKIM key records (RFC 6376, 8301, 8463): tags, flags, revocation, key type and measured size."""

from __future__ import annotations

import base64

import pytest

from inboxcheck.dns.records import KeyType, RecordSyntaxError, parse_dkim
from inboxcheck.dns.records.dkim import is_dkim_record, rsa_modulus_bits

# Public halves of throwaway keys generated once with openssl (no private key was kept).
RSA_1024 = (
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC/xACQ9tZ6hwLgpgY/0fTzt3NjkT3dnZBEzfcWU4imAGh+/2qpK4dyR8O/q+"
    "t5b2Pr17a6UR+sVAFGMLtqJDD/DL27SMSiR+k1GsZAHUULKjUZj2RVmYJNSdPlehjqM61SSq4g6G8ZKlYRHHTkgk6oA2sYWcZU"
    "L5yxO7jmdk/0AwIDAQAB"
)


def der_spki(modulus_bits: int) -> bytes:
    """A syntactically valid SubjectPublicKeyInfo with a modulus of ``modulus_bits`` bits."""

    def tlv(tag: int, body: bytes) -> bytes:
        length = len(body)
        if length < 0x80:
            return bytes([tag, length]) + body
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(raw)]) + raw + body

    modulus = (1 << (modulus_bits - 1)) | 1
    rsa = tlv(
        0x30, tlv(0x02, b"\x00" + modulus.to_bytes(modulus_bits // 8, "big")) + tlv(0x02, b"\x01\x00\x01")
    )
    algorithm = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    return tlv(0x30, algorithm + tlv(0x03, b"\x00" + rsa))


def test_real_1024_bit_key() -> None:
    key = parse_dkim(f"v=DKIM1; k=rsa; p={RSA_1024}")
    assert key.key_type is KeyType.RSA
    assert key.bits == 1024
    assert key.revoked is False and key.testing is False and key.usable_for_email is True
    assert key.version == "DKIM1"


@pytest.mark.parametrize("bits", [512, 1024, 2048, 3072, 4096])
def test_key_size_measured_from_the_key(bits: int) -> None:
    encoded = base64.b64encode(der_spki(bits)).decode()
    assert parse_dkim(f"p={encoded}").bits == bits


def test_bare_pkcs1_key_is_measured_too() -> None:
    spki = der_spki(2048)
    rsa_public_key = spki[spki.index(b"\x03\x82") + 5 :]
    assert rsa_modulus_bits(rsa_public_key) == 2048


@pytest.mark.parametrize(
    "data", [b"", b"\x30", b"\x30\x80", b"\x02\x01\x00", b"\x30\x03\x02\x01\x00", b"\xff" * 8]
)
def test_modulus_of_garbage_is_none(data: bytes) -> None:
    assert rsa_modulus_bits(data) is None


def test_whitespace_inside_the_key_is_ignored() -> None:
    spaced = " ".join(RSA_1024[i : i + 40] for i in range(0, len(RSA_1024), 40))
    assert parse_dkim(f"v=DKIM1; p={spaced}").bits == 1024


def test_revoked() -> None:
    key = parse_dkim("v=DKIM1; k=rsa; p=")
    assert key.revoked is True and key.bits is None and key.usable_for_email is False


def test_flags_hashes_services() -> None:
    key = parse_dkim(f"v=DKIM1; h=sha1; s=email; t=y:s; n=notes here; p={RSA_1024}")
    assert key.testing is True and key.strict_subdomains is True
    assert key.hash_algorithms == ("sha1",)
    assert any("RFC 8301" in note for note in key.notes)
    assert key.service_types == ("email",)
    assert key.usable_for_email is True


def test_service_other_than_email_is_not_usable() -> None:
    assert parse_dkim(f"s=other; p={RSA_1024}").usable_for_email is False


def test_ed25519() -> None:
    raw = bytes(range(32))
    key = parse_dkim(f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}")
    assert key.key_type is KeyType.ED25519 and key.bits == 256 and key.public_key == raw


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("k=rsa; v=DKIM1; p=", "first tag"),
        ("v=DKIM2; p=", "not DKIM1"),
        ("v=DKIM1; k=dsa; p=", "key type"),
        ("v=DKIM1; k=rsa", "no p="),
        ("v=DKIM1; p=MIIB!!", "base64"),
        ("v=DKIM1; p=A", "base64"),
        ("v=DKIM1; p=AAAA", "RSA public key"),
        ("v=DKIM1; k=ed25519; p=AAAA", "32 bytes"),
        ("v=DKIM1; p=; p=", "twice"),
        ("v=DKIM1; junk; p=", "without '='"),
    ],
)
def test_syntax_errors(text: str, words: str) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_dkim(text)
    assert words in caught.value.message
    assert 0 <= caught.value.position <= len(text)


def test_tag_names_are_case_sensitive() -> None:
    # RFC 6376 3.2: "P=" is an unknown tag, not the key.
    with pytest.raises(RecordSyntaxError, match="no p="):
        parse_dkim(f"v=DKIM1; P={RSA_1024}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DKIM1; p=abc", True),
        ("k=rsa; p=abc", True),
        ("p=", True),
        ("google-site-verification=x", False),
        ("", False),
    ],
)
def test_is_dkim_record(text: str, expected: bool) -> None:
    assert is_dkim_record(text) is expected
