"""DKIM key records, exactly: every error's words and position, the key measured from hand-built
DER (each way a SubjectPublicKeyInfo or RSAPublicKey can be wrong), the flag, hash and service lists,
and what counts as a DKIM record. Offline; run under mutation testing (scripts/mutation.sh)."""

from __future__ import annotations

import base64

import pytest

from inboxcheck.dns.records import KeyType, RecordSyntaxError, parse_dkim
from inboxcheck.dns.records.dkim import is_dkim_record, rsa_modulus_bits

RSA_OID = bytes.fromhex("2a864886f70d010101")
LONG = "x" * 30


def tlv(tag: int, body: bytes) -> bytes:
    length = len(body)
    if length < 0x80:
        return bytes([tag, length]) + body
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def rsa_key(modulus: int = (1 << 1023) | 1, exponent: bytes = b"\x01\x00\x01") -> bytes:
    body = b"\x00" + modulus.to_bytes((modulus.bit_length() + 7) // 8 or 1, "big")
    return tlv(0x30, tlv(0x02, body) + tlv(0x02, exponent))


def spki(
    key: bytes | None = None, *, oid: bytes = RSA_OID, unused: bytes = b"\x00", oid_tag: int = 0x06
) -> bytes:
    algorithm = tlv(0x30, tlv(oid_tag, oid) + b"\x05\x00")
    return tlv(0x30, algorithm + tlv(0x03, unused + (rsa_key() if key is None else key)))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("k=rsa; v=DKIM1; p=", "v=DKIM1 must be the first tag when present", 7),
        (f"v=DKIM2{LONG}; p=", f"the version is {('DKIM2' + LONG)[:20]!r}, not DKIM1", 2),
        (
            f"v=DKIM1; k=dsa{LONG}; p=",
            f"k={('dsa' + LONG)[:20]} is not a key type verifiers know (rsa or ed25519)",
            11,
        ),
        ("v=DKIM1; k=rsa", "the record has no p= (public key) tag", 14),
        ("v=DKIM1; p=MIIB!!", "p= is not valid base64", 15),
        ("v=DKIM1; p=A", "p= is not valid base64", 11),
        ("v=DKIM1; p=AAAAA==", "p= is not valid base64", 11),
        ("v=DKIM1; p=AAAA", "p= does not hold an RSA public key (expected a DER SubjectPublicKeyInfo)", 11),
        ("v=DKIM1; k=ed25519; p=AAAA", "p= holds 3 bytes; an Ed25519 key is 32 bytes (RFC 8463)", 22),
        ("v=DKIM1; p=; p=", "the DKIM key record has the tag 'p' twice", 13),
    ],
)
def test_each_error_says_what_and_where(text: str, message: str, position: int) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_dkim(text)
    assert caught.value.message == message
    assert caught.value.position == position


def test_a_bad_character_is_pointed_at_even_after_whitespace() -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_dkim("p=AB CD\tE*F")
    assert caught.value.position == 9
    with pytest.raises(RecordSyntaxError) as lower:
        parse_dkim("p=ab+/z*c")
    assert lower.value.position == 7


def test_base64_without_its_padding_is_decoded() -> None:
    # Two or three characters past a multiple of four are whole bytes; only one is not.
    with pytest.raises(RecordSyntaxError, match="p= holds 1 bytes"):
        parse_dkim("k=ed25519; p=AB")
    with pytest.raises(RecordSyntaxError, match="p= holds 2 bytes"):
        parse_dkim("k=ed25519; p=ABC")
    unpadded = b64(bytes(37)).rstrip("=")
    assert len(unpadded) == 50
    with pytest.raises(RecordSyntaxError, match="p= holds 37 bytes"):
        parse_dkim(f"k=ed25519; p={unpadded}")


def test_tag_names_keep_their_case() -> None:
    key = parse_dkim("p=; T=y; K=ed25519")
    assert key.testing is False and key.key_type is KeyType.RSA


def test_key_type_is_read_without_case_and_ed25519_without_padding() -> None:
    raw = bytes(range(32))
    key = parse_dkim(f"k=ED25519; p={b64(raw).rstrip('=')}")
    assert key.key_type is KeyType.ED25519 and key.public_key == raw and key.bits == 256
    assert parse_dkim("k=Ed25519; p=").key_type is KeyType.ED25519


def test_the_key_may_be_split_by_any_whitespace() -> None:
    encoded = b64(spki())
    spread = f"{encoded[:10]} {encoded[10:20]}\t{encoded[20:30]}\r\n{encoded[30:]}"
    assert parse_dkim(f"p={spread}").bits == 1024


def test_a_revoked_key_has_no_bits_whatever_its_type() -> None:
    for text in ("p=", "k=ed25519; p=", "v=DKIM1; p= ; t=y"):
        key = parse_dkim(text)
        assert key.revoked is True and key.bits is None and key.public_key == b""
    assert parse_dkim("v=DKIM1; p=").version == "DKIM1"
    assert parse_dkim("p=").version is None


# --- the key measured from DER --------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 8, 9, 1024, 2047])
def test_a_modulus_is_measured_to_the_bit(bits: int) -> None:
    assert rsa_modulus_bits(spki(rsa_key((1 << (bits - 1)) | 1))) == bits
    assert rsa_modulus_bits(rsa_key((1 << (bits - 1)) | 1)) == bits


@pytest.mark.parametrize(
    ("der", "why"),
    [
        (tlv(0x31, b""), "not a SEQUENCE"),
        (tlv(0x30, tlv(0x04, b"x")), "neither an INTEGER nor an algorithm SEQUENCE"),
        (spki(oid=bytes.fromhex("2a8648ce3d0201")), "an EC key"),
        (spki(oid_tag=0x04), "the algorithm is not an OID"),
        (spki(unused=b"\x01"), "unused bits in the key's BIT STRING"),
        (tlv(0x30, tlv(0x30, tlv(0x06, RSA_OID)) + tlv(0x03, b"")), "an empty BIT STRING"),
        (tlv(0x30, tlv(0x30, tlv(0x06, RSA_OID)) + tlv(0x04, b"\x00" + rsa_key())), "not a BIT STRING"),
        (spki(tlv(0x31, rsa_key()[2:])), "the key is not a SEQUENCE"),
        (spki(tlv(0x30, tlv(0x04, b"\x01") + tlv(0x02, b"\x03"))), "the modulus is not an INTEGER"),
        (spki(tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"\x03"))), "the exponent is not an INTEGER"),
        (spki(rsa_key(0)), "a zero modulus"),
        (spki(tlv(0x30, tlv(0x02, b"\x00"))), "no exponent"),
        (b"\x30\x05\x02\x01\x01", "truncated"),
    ],
)
def test_what_is_not_an_rsa_key(der: bytes, why: str) -> None:
    assert rsa_modulus_bits(der) is None, why
    with pytest.raises(RecordSyntaxError, match="does not hold an RSA public key"):
        parse_dkim(f"p={b64(der)}")


def test_a_key_longer_than_its_bit_string_is_refused() -> None:
    key = rsa_key()
    inner = tlv(0x30, tlv(0x30, tlv(0x06, RSA_OID)) + tlv(0x03, b"\x00" + key[:-3])) + key[-3:]
    assert rsa_modulus_bits(inner) is None
    # The RSAPublicKey's own elements may not run past it either.
    modulus = tlv(0x02, b"\x00\xff")
    exponent = tlv(0x02, b"\x03")
    short = bytes([0x30, len(modulus) - 1]) + modulus + exponent
    assert rsa_modulus_bits(spki(short)) is None
    short_exponent = bytes([0x30, len(modulus) + 1]) + modulus + exponent
    assert rsa_modulus_bits(spki(short_exponent)) is None


def test_a_bit_string_may_not_run_past_the_key_info() -> None:
    body = tlv(0x30, tlv(0x06, RSA_OID)) + tlv(0x03, b"\x00" + rsa_key())
    outer = bytes([0x30, 0x81, len(body) - 5]) + body
    assert rsa_modulus_bits(outer) is None


# --- flags, hashes, services ----------------------------------------------------------------------


def test_flags_are_a_colon_list_with_spaces_allowed() -> None:
    key = parse_dkim("p=; t= s : y ")
    assert key.testing is True and key.strict_subdomains is True
    only = parse_dkim("p=; t=s")
    assert only.testing is False and only.strict_subdomains is True
    none = parse_dkim("p=; t=:")
    assert none.testing is False and none.strict_subdomains is False
    assert parse_dkim("p=; t=yes").testing is False


def test_hashes_are_read_without_case_and_a_list_without_sha256_is_noted() -> None:
    key = parse_dkim("p=; h= SHA1 : sha512 ")
    assert key.hash_algorithms == ("sha1", "sha512")
    assert key.notes == ("h= allows only sha1, sha512; RFC 8301 requires sha256 (sha1 is obsolete)",)
    assert parse_dkim("p=; h=sha1:SHA256").notes == ()
    assert parse_dkim("p=; h=:").hash_algorithms == ()
    assert parse_dkim("p=; h=:").notes == ()
    assert parse_dkim("p=").hash_algorithms == ()


def test_services_default_to_any_and_are_read_without_case() -> None:
    assert parse_dkim("p=").service_types == ("*",)
    assert parse_dkim("p=; s=").service_types == ("*",)
    key = parse_dkim(f"p={b64(spki())}; s= Email : other ")
    assert key.service_types == ("email", "other") and key.usable_for_email is True
    assert parse_dkim(f"p={b64(spki())}; s=*").usable_for_email is True
    assert parse_dkim(f"p={b64(spki())}; s=other").usable_for_email is False
    assert parse_dkim("p=; s=email").usable_for_email is False


def test_the_text_is_kept() -> None:
    text = f"v=DKIM1; p={b64(spki())}"
    assert parse_dkim(text).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  v=DKIM1; p=x", True),
        ("v=DKIM1", True),
        ("k=rsa;p =abc", True),
        ("k=rsa; \tp=abc", True),
        (" p=", True),
        ("ap=1", False),
        ("k=rsa; ap=1", False),
        ("v=spf1 -all", False),
    ],
)
def test_what_counts_as_a_dkim_record(text: str, expected: bool) -> None:
    assert is_dkim_record(text) is expected
