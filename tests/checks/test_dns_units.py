"""The DNS checks' pure helpers: record merging, the tree walk's names, string lengths."""

from __future__ import annotations

import pytest

from inboxcheck._check import Outcome
from inboxcheck._models import Severity
from inboxcheck._options import CheckOptions
from inboxcheck.checks.dns import CHECKS, merged_spf_record, walk_targets
from inboxcheck.checks.dns.spf import _check_string_lengths


@pytest.mark.parametrize(
    ("current", "includes", "expected"),
    [
        (None, ["_spf.google.com"], "v=spf1 include:_spf.google.com ~all"),
        (None, [], "v=spf1 a:smtp.example.net ~all"),
        (["v=spf1 mx -all"], ["_spf.google.com"], "v=spf1 mx include:_spf.google.com ~all"),
        (["v=spf1 mx +all"], [], "v=spf1 mx ~all"),
        (["v=spf1 mx ?all"], [], "v=spf1 mx ~all"),
        (["v=spf1 mx"], [], "v=spf1 mx ~all"),
        (["v=spf1 include:_spf.google.com ~all"], ["_spf.google.com"], "v=spf1 include:_spf.google.com ~all"),
        (["v=spf1 a -all", "v=spf1 ip4:192.0.2.1 a ~all"], [], "v=spf1 a ip4:192.0.2.1 ~all"),
        (
            ["v=spf1 mx redirect=_spf.example.com"],
            ["x.example"],
            "v=spf1 mx include:x.example redirect=_spf.example.com",
        ),
    ],
)
def test_merged_spf_record(current: list[str] | None, includes: list[str], expected: str) -> None:
    assert merged_spf_record(current, includes, sending_host="smtp.example.net") == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("example.com", ["example.com", "com"]),
        ("Shop.ACME.co.uk.", ["shop.acme.co.uk", "acme.co.uk", "co.uk", "uk"]),
        # Eight labels or more: after the name itself, straight to its last seven (RFC 9989 4.10).
        (
            "a.b.c.d.e.f.g.h.i.example",
            [
                "a.b.c.d.e.f.g.h.i.example",
                "d.e.f.g.h.i.example",
                "e.f.g.h.i.example",
                "f.g.h.i.example",
                "g.h.i.example",
                "h.i.example",
                "i.example",
                "example",
            ],
        ),
        ("", []),
    ],
)
def test_tree_walk_targets(domain: str, expected: list[str]) -> None:
    targets = walk_targets(domain)
    assert targets == expected
    assert len(targets) <= 8


def test_string_over_255_is_reported() -> None:
    # Only reachable when the DNS layer hands over such a string (a DNS message cannot carry one).
    out = Outcome(summary="")
    _check_string_lengths(out, "example.com", [b"v=spf1 " + b"a" * 300, b" -all"], "v=spf1 ...")
    (finding,) = out.findings
    assert finding.code == "dns.spf.string_too_long"
    assert finding.severity is Severity.FAIL
    assert finding.evidence["lengths"] == [307]


def test_strings_within_limit_are_fine() -> None:
    out = Outcome(summary="")
    _check_string_lengths(out, "example.com", [b"a" * 255, b"b" * 255], "v=spf1 ...")
    assert out.findings == []


def test_registered_checks() -> None:
    assert [spec.name for spec in CHECKS] == [
        "dns.mx",
        "dns.spf",
        "dns.dkim",
        "dns.dmarc",
        "dns.receivers",
        "dns.fcrdns",
        "dns.blocklists",
    ]
    assert CHECKS[4].needs == ("dns.spf", "dns.dkim", "dns.dmarc")
    # The deliverability checks ask third parties: only when asked for.
    assert [spec.name for spec in CHECKS if spec.selected_by(CheckOptions())] == [s.name for s in CHECKS[:5]]


def test_a_zoho_personal_account_with_zohos_mx_is_no_provider_mismatch() -> None:
    # Zoho personal accounts use the MX hosts listed once, in the zoho-org preset.
    from inboxcheck._check import CheckContext, Outcome
    from inboxcheck._models import Account
    from inboxcheck._options import CheckOptions
    from inboxcheck._presets import PresetMatch, load_presets
    from inboxcheck.checks.dns.mx import _check_provider
    from tests.scenarios import base_payload

    presets = load_presets()
    zoho, org, google = presets.get("zoho"), presets.get("zoho-org"), presets.get("google-workspace")
    account = Account.model_validate(base_payload(email_address="jo@example.org", smtp_host="smtp.zoho.eu"))
    for expected, detected, mismatch in ((zoho, org, False), (zoho, google, True)):
        match = PresetMatch(preset=expected, matched_by="smtp_host", candidates=(expected,))
        ctx = CheckContext(account, options=CheckOptions(), presets=presets, match=match)
        out = Outcome(summary="")
        _check_provider(ctx, out, ["mx.zoho.eu"], detected)
        assert [f.code for f in out.findings] == (["dns.mx.provider_mismatch"] if mismatch else [])
