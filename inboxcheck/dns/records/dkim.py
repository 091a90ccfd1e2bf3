"""DKIM key records (RFC 6376 3.6.1, RFC 8301, RFC 8463).

:func:`parse_dkim` returns a :class:`DkimKey` or raises :class:`RecordSyntaxError`. The key's type and
size come from the key itself: ``p=`` of an RSA key is a DER SubjectPublicKeyInfo (some publishers put
a bare PKCS#1 RSAPublicKey there, which verifiers also accept), read by the small DER reader below
rather than a crypto library; an Ed25519 key is 32 raw bytes.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from inboxcheck._der import BIT_STRING, INTEGER, OID, SEQUENCE, DerError, read_tlv
from inboxcheck.dns.records._common import RecordSyntaxError, parse_tag_list

__all__ = ["DkimKey", "KeyType", "is_dkim_record", "parse_dkim", "rsa_modulus_bits"]


class KeyType(StrEnum):
    RSA = "rsa"
    ED25519 = "ed25519"


@dataclass(frozen=True)
class DkimKey:
    text: str
    key_type: KeyType
    public_key: bytes  # empty: the key is revoked
    bits: int | None  # RSA modulus length; 256 for Ed25519; None when revoked
    testing: bool = False  # t=y
    strict_subdomains: bool = False  # t=s: the i= domain must equal d=
    hash_algorithms: tuple[str, ...] = ()  # h=, empty means "all"
    service_types: tuple[str, ...] = ("*",)
    version: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def revoked(self) -> bool:
        """RFC 6376 3.6.1: an empty ``p=`` means the key has been revoked."""
        return not self.public_key

    @property
    def usable_for_email(self) -> bool:
        return not self.revoked and ("*" in self.service_types or "email" in self.service_types)


_RSA_OID: Final = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1 rsaEncryption
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")


def is_dkim_record(text: str) -> bool:
    """Whether a TXT record at a selector looks like a DKIM key (``v=DKIM1`` or a ``p=`` tag)."""
    stripped = text.strip()
    return stripped.startswith("v=DKIM1") or re.search(r"(^|;)\s*p\s*=", stripped) is not None


def parse_dkim(text: str) -> DkimKey:
    """Parse one DKIM key record; raise :class:`RecordSyntaxError` at the first error."""
    tags = parse_tag_list(text, what="DKIM key record", fold_case=False)
    by_name = {tag.name: tag for tag in tags}
    version = None
    notes: list[str] = []
    if "v" in by_name:
        tag = by_name["v"]
        if tags[0].name != "v":
            raise RecordSyntaxError(
                "v=DKIM1 must be the first tag when present", record=text, position=tag.position
            )
        if tag.value != "DKIM1":
            raise RecordSyntaxError(
                f"the version is {tag.value[:20]!r}, not DKIM1", record=text, position=tag.value_position
            )
        version = tag.value
    key_type = KeyType.RSA
    if "k" in by_name:
        tag = by_name["k"]
        try:
            key_type = KeyType(tag.value.lower())
        except ValueError:
            raise RecordSyntaxError(
                f"k={tag.value[:20]} is not a key type verifiers know (rsa or ed25519)",
                record=text,
                position=tag.value_position,
            ) from None
    if "p" not in by_name:
        raise RecordSyntaxError("the record has no p= (public key) tag", record=text, position=len(text))
    p_tag = by_name["p"]
    encoded = re.sub(r"[ \t\r\n]", "", p_tag.value)
    if not _BASE64.match(encoded) or len(encoded) % 4 == 1:
        bad = next((i for i, c in enumerate(p_tag.value) if not re.match(r"[A-Za-z0-9+/= \t\r\n]", c)), 0)
        raise RecordSyntaxError("p= is not valid base64", record=text, position=p_tag.value_position + bad)
    try:
        public_key = binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4)) if encoded else b""
    except binascii.Error:
        raise RecordSyntaxError(
            "p= is not valid base64", record=text, position=p_tag.value_position
        ) from None
    bits: int | None = None
    if public_key:
        if key_type is KeyType.RSA:
            bits = rsa_modulus_bits(public_key)
            if bits is None:
                raise RecordSyntaxError(
                    "p= does not hold an RSA public key (expected a DER SubjectPublicKeyInfo)",
                    record=text,
                    position=p_tag.value_position,
                )
        else:
            if len(public_key) != 32:
                raise RecordSyntaxError(
                    f"p= holds {len(public_key)} bytes; an Ed25519 key is 32 bytes (RFC 8463)",
                    record=text,
                    position=p_tag.value_position,
                )
            bits = 256
    flags: tuple[str, ...] = ()
    if "t" in by_name:
        flags = tuple(flag.strip() for flag in by_name["t"].value.split(":") if flag.strip())
    hashes: tuple[str, ...] = ()
    if "h" in by_name:
        hashes = tuple(h.strip().lower() for h in by_name["h"].value.split(":") if h.strip())
        if hashes and "sha256" not in hashes:
            notes.append(
                "h= allows only " + ", ".join(hashes) + "; RFC 8301 requires sha256 (sha1 is obsolete)"
            )
    services: tuple[str, ...] = ("*",)
    if "s" in by_name:
        services = tuple(s.strip().lower() for s in by_name["s"].value.split(":") if s.strip()) or ("*",)
    return DkimKey(
        text=text,
        key_type=key_type,
        public_key=public_key,
        bits=bits,
        testing="y" in flags,
        strict_subdomains="s" in flags,
        hash_algorithms=hashes,
        service_types=services,
        version=version,
        notes=tuple(notes),
    )


def _rsa_public_key_bits(data: bytes, offset: int, end: int) -> int:
    """RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1)."""
    tag, start, stop = read_tlv(data, offset)
    if tag != SEQUENCE or stop > end:
        raise DerError("not an RSAPublicKey")
    tag, m_start, m_end = read_tlv(data, start)
    if tag != INTEGER or m_end > stop:
        raise DerError("not an RSAPublicKey")
    tag, _e_start, e_end = read_tlv(data, m_end)
    if tag != INTEGER or e_end > stop:
        raise DerError("not an RSAPublicKey")
    modulus = int.from_bytes(data[m_start:m_end], "big")
    if modulus <= 0:
        raise DerError("not an RSAPublicKey")
    return modulus.bit_length()


def rsa_modulus_bits(der: bytes) -> int | None:
    """The modulus length of an RSA key given as SubjectPublicKeyInfo or RSAPublicKey, else None."""
    try:
        tag, start, end = read_tlv(der, 0)
        if tag != SEQUENCE:
            return None
        tag, alg_start, alg_end = read_tlv(der, start)
        if tag == INTEGER:
            return _rsa_public_key_bits(der, 0, len(der))
        if tag != SEQUENCE:
            return None
        tag, oid_start, oid_end = read_tlv(der, alg_start)
        if tag != OID or der[oid_start:oid_end] != _RSA_OID:
            return None
        tag, bits_start, bits_end = read_tlv(der, alg_end)
        if tag != BIT_STRING or bits_end > end or bits_start >= bits_end or der[bits_start] != 0:
            return None
        return _rsa_public_key_bits(der, bits_start + 1, bits_end)
    except DerError:
        return None
