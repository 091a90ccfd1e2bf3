"""A minimal reader for DER (ITU-T X.690), the encoding of X.509 certificates and public keys.

Both its users need only a few fields: the TLS check reads a certificate's dates and names, the DKIM
record parser an RSA key's modulus length. ``cryptography`` would do it too, but it is not otherwise
a runtime dependency, and importing ``cryptography.x509`` costs about 50-60 ms for work this reader
does at a comparable speed. Pure and total: hostile bytes raise :class:`DerError`, nothing else.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BIT_STRING", "INTEGER", "OID", "SEQUENCE", "DerError", "children", "read_tlv"]

INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OID: Final = 0x06
SEQUENCE: Final = 0x30


class DerError(ValueError):
    """The bytes are not the DER element they were read as."""


def read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise DerError("truncated header")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # Four length octets already allow 4 GiB; more, or the indefinite form (0), is not DER here.
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("truncated value")
    return tag, pos, end


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The elements inside the constructed element whose contents are ``data[start:end]``."""
    items = []
    pos = start
    while pos < end:
        tag, vstart, vend = read_tlv(data, pos)
        if vend > end:
            raise DerError("child overruns parent")
        items.append((tag, vstart, vend))
        pos = vend
    return items
