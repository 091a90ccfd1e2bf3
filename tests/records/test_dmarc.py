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
    assert record.pct == 100 and record.testing is False and record.psd == "u"
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
    assert record.pct == 50 and record.testing is True and record.psd == "n"
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


# Each error pinned whole: its words, the value quoted (cut at 20 characters), and where it points.
_LONG = "x" * 30


@pytest.mark.parametrize(
    ("record", "message", "position"),
    [
        ("p=none; v=DMARC1", "the record must start with v=DMARC1", 0),
        ("v=DMARC1; p=none; P=reject", "the DMARC record has the tag 'P' twice", 18),
        (
            f"v=DMARC1; p=none; rua=reports{'x' * 70}",
            f"rua address {('reports' + 'x' * 70)[:60]!r} is not a URI; write mailto:reports@example.com",
            22,
        ),
        (f"v=DMARC2{_LONG}; p=none", f"the version is {('DMARC2' + _LONG)[:20]!r}, not DMARC1", 2),
        ("v=DMARC1; sp=none", "the record has no p= (policy) tag, which is required", 17),
        (f"v=DMARC1; p=no{_LONG}", f"p=no{_LONG[:18]} is not a policy; use none, quarantine or reject", 12),
        ("v=DMARC1; p=none; adkim=x", "adkim=x must be r (relaxed) or s (strict)", 24),
        ("v=DMARC1; p=none; aspf=relaxed", "aspf=relaxed must be r (relaxed) or s (strict)", 23),
        ("v=DMARC1; p=none; pct=101", "pct=101 is not a whole number from 0 to 100", 22),
        (f"v=DMARC1; p=none; pct=1{_LONG}", f"pct=1{_LONG[:19]} is not a whole number from 0 to 100", 22),
        ("v=DMARC1; p=none; t=Y", "t=Y must be y or n", 20),
        (f"v=DMARC1; p=none; t={_LONG}", f"t={_LONG[:20]} must be y or n", 20),
        ("v=DMARC1; p=none; psd=Y", "psd=Y must be y, n or u", 22),
        (f"v=DMARC1; p=none; psd={_LONG}", f"psd={_LONG[:20]} must be y, n or u", 22),
        ("v=DMARC1; p=none; fo=S", "fo=S must be 0, 1, d or s (colon-separated)", 21),
        (f"v=DMARC1; p=none; fo={_LONG}", f"fo={_LONG[:20]} must be 0, 1, d or s (colon-separated)", 21),
        (f"v=DMARC1; p=none; ri={_LONG}", f"ri={_LONG[:20]} is not a number of seconds", 21),
        ("v=DMARC1; p=none; rua=", "rua has an empty address", 22),
        ("v=DMARC1; p=none; ruf=mailto:nobody", "ruf address 'mailto:nobody' is not a valid mailto: URI", 22),
        (
            "v=DMARC1; p=none; aspf=s; ruf=x@y.test",
            "ruf address 'x@y.test' is not a URI; write mailto:reports@example.com",
            30,
        ),
        (
            "v=DMARC1; p=none; rua=mailto:a@b.test, mailto:c@d",
            "rua address 'mailto:c@d' is not a valid mailto: URI",
            39,
        ),
        (
            f"v=DMARC1; p=none; rua=mailto:a@{'b' * 70}.test",
            f"rua address {('mailto:a@' + 'b' * 70)[:60]!r} is not a valid mailto: URI",
            22,
        ),
        ("v=DMARC1; p=none; rua=mailto:a@b.t", "rua address 'mailto:a@b.t' is not a valid mailto: URI", 22),
    ],
)
def test_each_error_says_what_and_where(record: str, message: str, position: int) -> None:
    with pytest.raises(RecordSyntaxError) as caught:
        parse_dmarc(record)
    assert caught.value.message == message
    assert caught.value.position == position
    assert caught.value.record == record


def test_the_edges_of_each_allowed_range_are_accepted() -> None:
    record = parse_dmarc("v=DMARC1; p=none; pct=100; t=n; psd=y; fo=0:s; adkim=r; aspf=r")
    assert record.pct == 100
    assert record.testing is False
    assert record.psd == "y"
    assert record.fo == ("0", "s")
    assert (record.adkim, record.aspf) == (Alignment.RELAXED, Alignment.RELAXED)
    assert parse_dmarc("v=DMARC1; p=none; pct=0").pct == 0
    assert parse_dmarc("v=DMARC1; p=none; psd=u").psd == "u"
    assert parse_dmarc("v=DMARC1; p=none; t=y").testing is True
    assert parse_dmarc("v=DMARC1; p=none; aspf=s").aspf is Alignment.STRICT


def test_the_record_text_and_uris_are_kept_exactly() -> None:
    text = (
        "v=DMARC1; p=none; rua=mailto:agg@Reports.Example.Test.,https://r.example.test/x; ruf=mailto:f@ab.io"
    )
    record = parse_dmarc(text)
    assert record.text == text
    first, second = record.rua
    assert (first.uri, first.address, first.domain) == (
        "mailto:agg@Reports.Example.Test.",
        "agg@Reports.Example.Test.",
        "reports.example.test",
    )
    assert (second.uri, second.address, second.domain) == ("https://r.example.test/x", None, None)
    assert [u.domain for u in record.ruf] == ["ab.io"]  # a two-letter top-level domain
    assert (
        parse_dmarc("v=DMARC1; p=none; rua=HTTPS://r.example.test/").rua[0].uri == "HTTPS://r.example.test/"
    )


def test_a_note_points_out_p_not_directly_after_the_version() -> None:
    record = parse_dmarc("v=DMARC1; rua=mailto:a@b.test; p=none")
    assert record.notes == (
        "p should directly follow v=DMARC1 (RFC 7489 6.4); some receivers reject the record otherwise",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" \tv=DMARC1; p=none", True),
        ("\nv=DMARC1; p=none", False),
        ("Xv=DMARC1", False),
        ("v = DMARC1 ;p=none", True),
        ("v=DMARC10", False),
        ("v=DMARC1", True),
    ],
)
def test_what_counts_as_a_dmarc_record(text: str, expected: bool) -> None:
    assert is_dmarc_record(text) is expected


def test_a_report_domain_loses_only_its_final_dot_and_its_case() -> None:
    record = parse_dmarc("v=DMARC1; p=none; rua=mailto:agg@Reports.Example.XX.")
    assert record.rua[0].domain == "reports.example.xx"
    assert record.rua[0].address == "agg@Reports.Example.XX."
