"""The DER reader both the certificate reader and the DKIM key parser use."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from inboxcheck._der import SEQUENCE, DerError, children, read_tlv


def test_reads_short_and_long_lengths() -> None:
    long = bytes([SEQUENCE, 0x81, 200]) + b"\0" * 200
    assert read_tlv(long, 0) == (SEQUENCE, 3, 203)
    nested = bytes([SEQUENCE, 6, 0x02, 1, 5, 0x02, 1, 7])
    assert children(nested, 2, 8) == [(0x02, 4, 5), (0x02, 7, 8)]


@pytest.mark.parametrize(
    "data",
    [
        b"\x30",  # no length
        b"\x30\x80\x00\x00",  # indefinite length is BER, not DER
        b"\x30\x85\x01\x00\x00\x00\x00",  # five length octets
        b"\x30\x05\x02\x01",  # shorter than it says
    ],
)
def test_malformed_elements_raise_the_one_error(data: bytes) -> None:
    with pytest.raises(DerError):
        read_tlv(data, 0)


def test_a_child_may_not_overrun_its_parent() -> None:
    with pytest.raises(DerError, match="overruns"):
        children(bytes([SEQUENCE, 2, 0x02, 3, 1, 2, 3]), 2, 4)


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=64))
def test_junk_raises_only_der_error(data: bytes, pos: int) -> None:
    try:
        _tag, start, end = read_tlv(data, pos)
        children(data, start, end)
    except DerError:
        return
    assert 0 <= start <= end <= len(data)
