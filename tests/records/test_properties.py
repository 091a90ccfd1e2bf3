"""Property tests: whatever the text, a parser returns its record or raises RecordSyntaxError."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings, strategies as st

from inboxcheck.dns.records import RecordSyntaxError, parse_dkim, parse_dmarc, parse_spf
from inboxcheck.dns.records.spf import is_spf_record

Parser = Callable[[str], object]

# Text that looks like each record type, so the search reaches deep into each grammar.
SPF_TOKENS = st.sampled_from(
    [
        "v=spf1",
        " ",
        "include:",
        "a",
        "mx",
        "ptr",
        "ip4:",
        "ip6:",
        "exists:",
        "all",
        "redirect=",
        "exp=",
        "+",
        "-",
        "~",
        "?",
        ":",
        "/",
        "//",
        ".",
        "%{",
        "}",
        "%",
        "d",
        "i",
        "r",
        "24",
        "0",
        "example.com",
        "192.0.2.1",
        "::1",
        "=",
        "é",
        "\t",
    ]
)
TAG_TOKENS = st.sampled_from(
    [
        "v=DMARC1",
        "v=DKIM1",
        ";",
        " ",
        "=",
        "p",
        "sp",
        "np",
        "rua",
        "ruf",
        "adkim",
        "aspf",
        "pct",
        "t",
        "psd",
        "fo",
        "ri",
        "k",
        "h",
        "s",
        "n",
        "rsa",
        "ed25519",
        "none",
        "reject",
        "quarantine",
        "mailto:",
        "a@b.example",
        ",",
        "!",
        "10m",
        "y",
        "r",
        "MIGf",
        "AAAA",
        "==",
        "\n",
        "é",
        ":",
    ]
)


def never_raises_otherwise(parser: Parser, text: str) -> None:
    error: RecordSyntaxError | None = None
    try:
        parser(text)
    except RecordSyntaxError as caught:
        error = caught
    if error is not None:
        assert 0 <= error.position <= len(text)
        assert error.message
        assert error.pointer().startswith(text)


@settings(max_examples=400)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    for parser in (parse_spf, parse_dmarc, parse_dkim):
        never_raises_otherwise(parser, text)


@settings(max_examples=400)
@given(st.lists(SPF_TOKENS, max_size=25).map("".join))
def test_spf_shaped_text(text: str) -> None:
    never_raises_otherwise(parse_spf, text)


@settings(max_examples=400)
@given(st.lists(TAG_TOKENS, max_size=25).map("".join))
def test_tag_shaped_text(text: str) -> None:
    never_raises_otherwise(parse_dmarc, text)
    never_raises_otherwise(parse_dkim, text)


@given(st.binary(max_size=600))
def test_arbitrary_key_bytes(data: bytes) -> None:
    import base64

    never_raises_otherwise(parse_dkim, "v=DKIM1; p=" + base64.b64encode(data).decode())


@given(
    st.lists(
        st.sampled_from(["ip4:192.0.2.1", "-all", "mx", "a:example.com/24", "include:x.example"]), max_size=8
    )
)
def test_valid_records_round_trip(terms: list[str]) -> None:
    text = " ".join(["v=spf1", *terms])
    record = parse_spf(text)
    assert is_spf_record(text)
    assert [term.text for term in record.terms] == terms
