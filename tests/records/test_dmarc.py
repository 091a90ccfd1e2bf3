"""DMARC parser (RFC 7489, RFC 9989): tags, defaults, report URIs, errors."""

from __future__ import annotations

import pytest

from inboxcheck.dns.records import RecordSyntaxError, parse_dmarc
from inboxcheck.dns.records.dmarc import Alignment, Policy, is_dmarc_record


def test_defaults() -> None:
    record = parse_dmarc("v=DMARC1; p=reject")
    assert record.policy is Policy.REJECT
    assert record.subdomain_policy is Policy.REJECT  # sp defaults to p
    assert record.nonexistent_policy is Policy.REJECT  # np defaults to sp (RFC 9989)
    assert record.adkim is Alignment.RELAXED and record.aspf is Alignment.RELAXED
    assert record.pct == 100 and not record.testing and record.psd == "u"
    assert record.rua == () and record.ruf == () and record.fo == ("0",)
    assert record.notes == ()


def test_every_tag() -> None:
    record = parse_dmarc(
        "v=DMARC1; p=quarantine; sp=none; np=reject; adkim=s; aspf=s; pct=50; t=y; psd=n; "
        "rua=mailto:agg@example.com,mailto:big@reports.example.net!10m; ruf=mailto:f@example.com; "
        "fo=1:d; rf=afrf; ri=3600; unknown=ignored"
    )
    assert (record.policy, record.subdomain_policy, record.nonexistent_policy) == (
        Policy.QUARANTINE,
        Policy.NONE,
        Policy.REJECT,
    )
    assert record.adkim is Alignment.STRICT and record.aspf.label == "strict"
    assert record.pct == 50 and record.testing and record.psd == "n"
    assert [(u.address, u.domain, u.size_limit) for u in record.rua] == [
        ("agg@example.com", "example.com", None),
        ("big@reports.example.net", "reports.example.net", "10m"),
    ]
    assert record.ruf[0].domain == "example.com"
    assert record.fo == ("1", "d")
    assert record.tags["unknown"] == "ignored"
    # Tags RFC 9989 removed are accepted and noted.
    assert any("pct" in note for note in record.notes)
    assert any("rf" in note for note in record.notes)
    assert any("ri" in note for note in record.notes)


def test_whitespace_case_and_trailing_semicolon() -> None:
    record = parse_dmarc("v=DMARC1 ;  P = None ; ADKIM=S;")
    assert record.policy is Policy.NONE and record.adkim is Alignment.STRICT


def test_p_not_second_is_noted() -> None:
    record = parse_dmarc("v=DMARC1; rua=mailto:a@example.com; p=none")
    assert any("directly follow" in note for note in record.notes)


def test_non_mailto_uri_is_kept() -> None:
    record = parse_dmarc("v=DMARC1; p=none; rua=https://reports.example.com/dmarc")
    assert record.rua[0].domain is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", True),
        ("v=DMARC1", True),
        (" v = DMARC1;p=none", True),
        ("v=DMARC2; p=none", False),
        ("p=none; v=DMARC1", False),
        ("v=spf1 -all", False),
        ("", False),
    ],
)
def test_is_dmarc_record(text: str, expected: bool) -> None:
    assert is_dmarc_record(text) is expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("p=none; v=DMARC1", 0, "must start with v=DMARC1"),
        ("", 0, "must start with v=DMARC1"),
        ("v=DMARC2; p=none", 2, "not DMARC1"),
        ("v=DMARC1", 8, "no p="),
        ("v=DMARC1; sp=none", 17, "no p="),
        ("v=DMARC1; p=maybe", 12, "not a policy"),
        ("v=DMARC1; p=none; sp=all", 21, "not a policy"),
        ("v=DMARC1; p=none; np=x", 21, "not a policy"),
        ("v=DMARC1; p=none; adkim=x", 24, "r (relaxed) or s (strict)"),
        ("v=DMARC1; p=none; pct=101", 22, "0 to 100"),
        ("v=DMARC1; p=none; pct=abc", 22, "0 to 100"),
        ("v=DMARC1; p=none; t=yes", 20, "y or n"),
        ("v=DMARC1; p=none; psd=x", 22, "y, n or u"),
        ("v=DMARC1; p=none; fo=2", 21, "0, 1, d or s"),
        ("v=DMARC1; p=none; ri=soon", 21, "seconds"),
        ("v=DMARC1; p=none; rua=reports@example.com", 22, "not a URI"),
        ("v=DMARC1; p=none; rua=mailto:nobody", 22, "mailto"),
        ("v=DMARC1; p=none; rua=mailto:a@example.com,", 43, "empty address"),
        ("v=DMARC1; p=none; p=reject", 18, "twice"),
        ("v=DMARC1; p=none; garbage", 18, "without '='"),
        ("v=DMARC1; p=none; 9x=1", 18, "invalid tag name"),
    ],
)
def test_syntax_errors(text: str, position: int, words: str) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_dmarc(text)
    assert caught.value.position == position, caught.value
    assert words in caught.value.message
