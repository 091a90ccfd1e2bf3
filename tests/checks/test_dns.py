"""The DNS checks against the lab's real NSD, which serves one zone per case (fixtures/zones)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from pydantic import JsonValue

from inboxcheck._check import CheckContext
from inboxcheck._models import Account, CheckResult, Finding, InboxType, Report, Severity, Status
from inboxcheck._options import CheckOptions, Family, Nameserver
from inboxcheck._presets import load_presets
from inboxcheck._runner import run_checks
from inboxcheck.dns.client import DnsClient

if TYPE_CHECKING:
    from lab import Lab

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
HOSTS = {
    InboxType.GOOGLE_WORKSPACE: ("smtp.gmail.com", "imap.gmail.com"),
    InboxType.OUTLOOK_365: ("smtp.office365.com", "outlook.office365.com"),
    InboxType.CUSTOM_SMTP: ("mail.example.net", "mail.example.net"),
}
DNS_CHECKS = ("dns.mx", "dns.spf", "dns.dkim", "dns.dmarc", "dns.receivers")
CUSTOM, GOOGLE, M365 = InboxType.CUSTOM_SMTP, InboxType.GOOGLE_WORKSPACE, InboxType.OUTLOOK_365


def account(email: str, inbox_type: InboxType = CUSTOM) -> Account:
    smtp, imap = HOSTS[inbox_type]
    return Account.model_validate(
        {
            "email_address": email,
            "display_name": "Dana Tester",
            "inbox_type": inbox_type,
            "smtp_host": smtp,
            "smtp_port": 587,
            "smtp_username": email,
            "smtp_password": "not-used-by-dns",
            "imap_host": imap,
            "imap_port": 993,
            "imap_username": email,
            "imap_password": "not-used-by-dns",
        }
    )


def obj(value: JsonValue) -> dict[str, JsonValue]:
    assert isinstance(value, dict)
    return value


def items(value: JsonValue) -> list[dict[str, JsonValue]]:
    assert isinstance(value, list)
    return [obj(item) for item in value]


def client_for(server: tuple[str, int], *, timeout: float = TIMEOUT) -> DnsClient:
    host, port = server
    return DnsClient([Nameserver(host=host, port=port)], timeout=timeout)


def options(
    server: tuple[str, int], *, timeout: float = TIMEOUT, selectors: tuple[str, ...] = ()
) -> CheckOptions:
    host, port = server
    return CheckOptions(
        nameservers=(Nameserver(host=host, port=port),),
        families=frozenset({Family.DNS}),
        timeout=timeout,
        dkim_selectors=selectors,
    )


async def audit(
    lab: Lab,
    email: str,
    inbox_type: InboxType = CUSTOM,
    *,
    selectors: tuple[str, ...] = (),
    client: DnsClient | None = None,
) -> Report:
    report = await run_checks(
        account(email, inbox_type),
        options=options(lab.nameserver, selectors=selectors),
        dns_client=client or client_for(lab.nameserver),
    )
    assert [check.name for check in report.checks] == list(DNS_CHECKS)
    return report


def by_code(result: CheckResult) -> dict[str, Finding]:
    return {finding.code: finding for finding in result.findings}


def assert_well_formed(finding: Finding) -> None:
    assert finding.message.endswith(".") and finding.message[0].isupper()
    assert finding.fix
    assert finding.evidence


# ------------------------------------------------------------------------------------------------
# Every code, each from its own zone on the real server.

CASES = [
    ("a@nomx.test", CUSTOM, "dns.mx", "dns.mx.missing", Severity.FAIL),
    ("a@nullmx.test", CUSTOM, "dns.mx", "dns.mx.missing", Severity.FAIL),
    ("a@mx-dangling.test", CUSTOM, "dns.mx", "dns.mx.host_unresolved", Severity.FAIL),
    ("a@m365.test", GOOGLE, "dns.mx", "dns.mx.provider_mismatch", Severity.WARN),
    ("a@nomx.test", CUSTOM, "dns.spf", "dns.spf.missing", Severity.FAIL),
    ("a@spf-two.test", CUSTOM, "dns.spf", "dns.spf.multiple", Severity.FAIL),
    ("a@spf-syntax.test", CUSTOM, "dns.spf", "dns.spf.syntax", Severity.FAIL),
    ("a@spf-eleven.test", CUSTOM, "dns.spf", "dns.spf.too_many_lookups", Severity.FAIL),
    ("a@spf-void.test", CUSTOM, "dns.spf", "dns.spf.void_lookups", Severity.FAIL),
    ("a@spf-include-missing.test", CUSTOM, "dns.spf", "dns.spf.include_missing", Severity.FAIL),
    ("a@spf-loop.test", CUSTOM, "dns.spf", "dns.spf.loop", Severity.FAIL),
    ("a@spf-plusall.test", CUSTOM, "dns.spf", "dns.spf.permissive", Severity.FAIL),
    ("a@spf-noall.test", CUSTOM, "dns.spf", "dns.spf.permissive", Severity.WARN),
    ("a@spf-redirect.test", CUSTOM, "dns.spf", "dns.spf.permissive", Severity.WARN),
    ("a@nogoogle.test", GOOGLE, "dns.spf", "dns.spf.provider_not_included", Severity.FAIL),
    ("a@spf-ptr.test", CUSTOM, "dns.spf", "dns.spf.ptr", Severity.WARN),
    ("a@spf-macro-void.test", CUSTOM, "dns.spf", "dns.spf.permerror", Severity.WARN),
    ("a@dkim512.test", CUSTOM, "dns.dkim", "dns.dkim.weak_key", Severity.FAIL),
    ("a@dkim1024.test", CUSTOM, "dns.dkim", "dns.dkim.weak_key", Severity.WARN),
    ("a@dkim-revoked.test", CUSTOM, "dns.dkim", "dns.dkim.revoked", Severity.FAIL),
    ("a@dkim-testing.test", CUSTOM, "dns.dkim", "dns.dkim.testing", Severity.WARN),
    ("a@dkim-syntax.test", CUSTOM, "dns.dkim", "dns.dkim.syntax", Severity.FAIL),
    ("a@dkim-custom.test", CUSTOM, "dns.dkim", "dns.dkim.missing", Severity.WARN),
    ("a@nogoogle.test", GOOGLE, "dns.dkim", "dns.dkim.missing", Severity.FAIL),
    ("a@nodmarc.test", CUSTOM, "dns.dmarc", "dns.dmarc.missing", Severity.FAIL),
    ("a@dmarc-two.test", CUSTOM, "dns.dmarc", "dns.dmarc.multiple", Severity.FAIL),
    ("a@dmarc-syntax.test", CUSTOM, "dns.dmarc", "dns.dmarc.syntax", Severity.FAIL),
    ("a@dmarc-none.test", CUSTOM, "dns.dmarc", "dns.dmarc.policy_none", Severity.WARN),
    ("a@dmarc-rua.test", CUSTOM, "dns.dmarc", "dns.dmarc.rua_unauthorised", Severity.WARN),
    ("a@cname-loop.test", CUSTOM, "dns.dmarc", "dns.cname_loop", Severity.FAIL),
    ("a@nomx.test", CUSTOM, "dns.receivers", "dns.receivers.not_ready", Severity.FAIL),
    ("a@nodmarc.test", CUSTOM, "dns.receivers", "dns.receivers.not_ready", Severity.WARN),
]


@pytest.mark.parametrize(("email", "inbox_type", "check", "code", "severity"), CASES)
async def test_code_from_real_zone(
    lab: Lab, email: str, inbox_type: InboxType, check: str, code: str, severity: Severity
) -> None:
    report = await audit(lab, email, inbox_type)
    findings = by_code(report.check(check))
    assert code in findings, report.check(check).findings
    finding = findings[code]
    assert finding.severity is severity
    assert_well_formed(finding)
    assert "dns.unavailable" not in {f.code for f in report.findings()}


# ------------------------------------------------------------------------------------------------
# Healthy domains


async def test_google_style_domain_passes_everything(lab: Lab) -> None:
    report = await audit(lab, "a@google-style.test", GOOGLE)
    assert report.findings() == []
    assert {check.status for check in report.checks} == {Status.PASS}
    spf = report.check("dns.spf").details
    # include:_spf.google.com costs 1 plus the 3 netblock includes behind it.
    assert (spf["lookup_count"], spf["headroom"]) == (4, 6)
    assert report.check("dns.mx").details["provider"] == "google-workspace"
    keys = obj(report.check("dns.dkim").details["keys"])
    assert set(keys) == {"google"}
    google = obj(keys["google"])
    assert (google["bits"], google["key_type"], google["usable"]) == (2048, "rsa", True)
    assert report.check("dns.receivers").details["receivers"] == {
        "gmail": "ready",
        "yahoo": "ready",
        "outlook": "ready",
    }


async def test_microsoft_selectors_followed_through_cnames(lab: Lab) -> None:
    report = await audit(lab, "a@m365.test", M365)
    assert report.findings() == []
    keys = obj(report.check("dns.dkim").details["keys"])
    assert set(keys) == {"selector1", "selector2"}
    for selector in ("selector1", "selector2"):
        key = obj(keys[selector])
        assert key["bits"] == 2048
        assert key["cname_chain"] == [f"{selector}-m365-test._domainkey.m365test.onmicrosoft.test"]
    assert report.check("dns.spf").details["lookup_count"] == 2
    dmarc = report.check("dns.dmarc").details
    assert dmarc["alignment"] == {"dkim": "strict (adkim=s)", "spf": "relaxed (aspf=r)"}


async def test_ten_lookups_pass_with_no_headroom(lab: Lab) -> None:
    result = (await audit(lab, "a@spf-ten.test")).check("dns.spf")
    assert result.status is Status.PASS
    assert (result.details["lookup_count"], result.details["headroom"]) == (10, 0)


async def test_eleven_lookups_fail_with_each_terms_cost(lab: Lab) -> None:
    result = (await audit(lab, "a@spf-eleven.test")).check("dns.spf")
    finding = by_code(result)["dns.spf.too_many_lookups"]
    assert finding.evidence["lookup_count"] == 11
    costs = {item["term"]: item["cost"] for item in items(finding.evidence["terms"])}
    assert costs == {
        "a": 1,
        "mx": 1,
        "exists:ex.spf-eleven.test": 1,
        **{f"include:i{n}.spf-eleven.test": 1 for n in range(1, 6)},
        "include:i6.spf-eleven.test": 3,  # itself, c1, and c1's include of c2
    }
    assert "11 DNS lookups" in finding.message
    assert result.details["headroom"] == -1


async def test_loop_names_the_cycle(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@spf-loop.test")).check("dns.spf"))["dns.spf.loop"]
    assert finding.evidence["cycle"] == [
        "loop-a.spf-loop.test",
        "loop-b.spf-loop.test",
        "loop-a.spf-loop.test",
    ]


async def test_include_missing_shows_the_lookup(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@spf-include-missing.test")).check("dns.spf"))[
        "dns.spf.include_missing"
    ]
    assert finding.evidence["target"] == "nothing-here.spf-include-missing.test"
    assert obj(finding.evidence["lookup"])["status"] == "nxdomain"


async def test_syntax_error_points_at_the_character(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@spf-syntax.test")).check("dns.spf"))["dns.spf.syntax"]
    assert finding.evidence["record"] == "v=spf1 mx ip4:192.0.2.300 ~all"
    assert finding.evidence["position"] == 14
    assert "character 15" in finding.message


async def test_record_split_into_strings_is_joined(lab: Lab) -> None:
    result = (await audit(lab, "a@spf-split.test")).check("dns.spf")
    assert result.status is Status.PASS
    record = result.details["record"]
    assert isinstance(record, str) and len(record) > 255 and record.endswith(" mx ~all")


async def test_provider_not_included_fix_merges_the_include(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@nogoogle.test", GOOGLE)).check("dns.spf"))[
        "dns.spf.provider_not_included"
    ]
    assert finding.fix is not None and finding.fix.endswith("v=spf1 mx include:_spf.google.com ~all")


async def test_multiple_spf_fix_merges_both(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@spf-two.test")).check("dns.spf"))["dns.spf.multiple"]
    assert finding.fix is not None
    assert finding.fix.endswith("v=spf1 include:_spf.google.com ip4:192.0.2.1 ~all")


async def test_dkim_missing_names_the_selectors_tried(lab: Lab) -> None:
    # _domainkey.dkim-custom.test exists (it holds acme2024), so every guessed selector is asked.
    finding = by_code((await audit(lab, "a@dkim-custom.test")).check("dns.dkim"))["dns.dkim.missing"]
    tried = finding.evidence["selectors_tried"]
    assert isinstance(tried, list) and {"google", "selector1", "selector2", "s1", "k1", "default"} <= set(
        tried
    )
    assert "selector1" in finding.message and "s1" in finding.message


async def test_dkim_guessing_stops_where_nothing_exists_below_domainkey(lab: Lab) -> None:
    client = client_for(lab.nameserver)
    report = await audit(lab, "a@nogoogle.test", GOOGLE, client=client)
    finding = by_code(report.check("dns.dkim"))["dns.dkim.missing"]
    # RFC 8020: NXDOMAIN at _domainkey.nogoogle.test rules out every selector below it; the
    # preset's own selector is still asked, and the finding stays a failure for a known provider.
    assert finding.severity is Severity.FAIL
    assert finding.evidence["selectors_tried"] == ["google"]
    assert "does not exist" in finding.message
    asked = {name for name, rdtype in client.queries if name.endswith("._domainkey.nogoogle.test")}
    assert asked == {"google._domainkey.nogoogle.test"}


async def test_dkim_selector_option_finds_a_custom_selector(lab: Lab) -> None:
    report = await audit(lab, "a@dkim-custom.test", selectors=("acme2024",))
    result = report.check("dns.dkim")
    assert result.status is Status.PASS
    assert set(obj(result.details["keys"])) == {"acme2024"}


async def test_ed25519_key_is_accepted(lab: Lab) -> None:
    result = (await audit(lab, "a@dkim-ed25519.test")).check("dns.dkim")
    assert result.status is Status.PASS
    assert obj(obj(result.details["keys"])["k1"])["key_type"] == "ed25519"


async def test_dmarc_falls_back_to_the_organisational_domain(lab: Lab) -> None:
    result = (await audit(lab, "a@sub.dmarc-org.test")).check("dns.dmarc")
    assert result.status is Status.PASS
    assert result.details["found_at"] == "_dmarc.dmarc-org.test"
    assert result.details["inherited"] is True
    assert result.details["effective_policy"] == "quarantine"  # sp applies to the subdomain


async def test_a_cname_loop_is_a_broken_record_not_a_missing_one(lab: Lab) -> None:
    report = await audit(lab, "a@cname-loop.test", selectors=("default",))
    for name, looped in (
        ("dns.dmarc", "_dmarc.cname-loop.test"),
        ("dns.dkim", "default._domainkey.cname-loop.test"),
    ):
        result = report.check(name)
        codes = {f.code for f in result.findings}
        assert "dns.cname_loop" in codes, result.findings
        assert not codes & {"dns.dmarc.missing", "dns.dkim.missing", "dns.unavailable"}
        assert result.status is Status.FAIL
        finding = by_code(result)["dns.cname_loop"]
        assert_well_formed(finding)
        assert items(finding.evidence["lookups"])[0]["name"] == looped
        assert items(finding.evidence["lookups"])[0]["status"] == "cname_loop"


# The DNS Tree Walk (RFC 9989 4.10) under multi-label public suffixes: co.uk (no record of its own)
# and com.au (a PSD policy, psd=y); the suffixes' parents (uk, au) are served so the walk gets answers.


async def test_dmarc_is_found_at_the_organisational_domain_under_a_multi_label_suffix(lab: Lab) -> None:
    result = (await audit(lab, "alice@shop.acme.co.uk")).check("dns.dmarc")
    assert "dns.dmarc.missing" not in {f.code for f in result.findings}, result.findings
    assert result.details["found_at"] == "_dmarc.acme.co.uk"
    assert result.details["inherited"] is True
    assert result.details["effective_policy"] == "quarantine"


async def test_report_destinations_are_compared_by_organisational_domain(lab: Lab) -> None:
    # reports.acme.co.uk is acme.co.uk's own; reports.other.co.uk is another organisation under co.uk
    # that has not authorised the reports (the last two labels would call both "co.uk").
    findings = (await audit(lab, "alice@acme.co.uk")).check("dns.dmarc").findings
    flagged = [f.evidence["destination"] for f in findings if f.code == "dns.dmarc.rua_unauthorised"]
    assert flagged == ["reports.other.co.uk"]


async def test_a_public_suffix_policy_applies_and_marks_the_organisational_domain(lab: Lab) -> None:
    result = (await audit(lab, "bob@example.com.au")).check("dns.dmarc")
    assert result.details["found_at"] == "_dmarc.com.au"
    assert result.details["inherited"] is True


async def test_a_missing_policy_names_every_name_the_walk_asked(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@deep.sub.nodmarc.test")).check("dns.dmarc"))["dns.dmarc.missing"]
    assert finding.evidence["looked_at"] == [
        "_dmarc.deep.sub.nodmarc.test",
        "_dmarc.sub.nodmarc.test",
        "_dmarc.nodmarc.test",
        "_dmarc.test",
    ]


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("shop.acme.co.uk", "acme.co.uk"),
        ("reports.other.co.uk", "other.co.uk"),
        ("mail.example.com.au", "example.com.au"),  # one below the psd=y record at com.au
        ("sub.dmarc-org.test", "dmarc-org.test"),
        ("nodmarc.test", "nodmarc.test"),  # no record anywhere: the domain itself
    ],
)
async def test_organisational_domain_by_tree_walk(lab: Lab, domain: str, expected: str) -> None:
    from inboxcheck.checks.dns.lookups import Lookups
    from inboxcheck.checks.dns.treewalk import organisational_domain

    lookups = Lookups(context(lab))
    assert await organisational_domain(lookups, domain) == expected
    assert len(lookups.seen) <= 8


@pytest.mark.parametrize(
    ("smtp_host", "imap_host", "same"),
    [
        ("smtp.acme.co.uk", "imap.acme.co.uk", True),
        ("smtp.acme.co.uk", "imap.other.co.uk", False),  # the last two labels would say "co.uk" for both
        ("smtp.example.com.au", "imap.other.com.au", False),  # com.au is a public suffix (psd=y)
        ("127.0.0.1", "imap.acme.co.uk", False),
    ],
)
async def test_login_hosts_are_one_organisation_by_the_same_walk(
    lab: Lab, smtp_host: str, imap_host: str, same: bool
) -> None:
    from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode
    from inboxcheck.checks.login.same_mailbox import LoginFact, _same_organisation

    def fact(protocol: str, host: str) -> LoginFact:
        endpoint = Endpoint(protocol=MailProtocol(protocol), host=host, port=1, tls=TlsMode.IMPLICIT)
        return LoginFact(endpoint=endpoint, username="a@acme.co.uk", address=None)

    result, why = await _same_organisation(context(lab), fact("smtp", smtp_host), fact("imap", imap_host))
    assert result is same, why


def context(lab: Lab) -> CheckContext:
    return CheckContext(
        account("a@lab.test"),
        options=options(lab.nameserver),
        presets=load_presets(),
        match=None,
        dns_client=client_for(lab.nameserver),
    )


async def test_authorised_report_destination_is_not_flagged(lab: Lab) -> None:
    findings = (await audit(lab, "a@dmarc-rua.test")).check("dns.dmarc").findings
    flagged = [f.evidence["destination"] for f in findings if f.code == "dns.dmarc.rua_unauthorised"]
    assert flagged == ["reports-nope.test"]


async def test_receivers_fix_lists_the_records_to_publish(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@nomx.test")).check("dns.receivers"))["dns.receivers.not_ready"]
    names = {(r["type"], r["name"]) for r in items(finding.evidence["records"])}
    assert names == {
        ("TXT", "nomx.test"),
        ("TXT", "_dmarc.nomx.test"),
        ("DKIM", "<selector>._domainkey.nomx.test"),
    }
    assert "v=DMARC1; p=none" in (finding.fix or "")


async def test_receivers_google_fix_has_the_provider_include_and_dkim_step(lab: Lab) -> None:
    finding = by_code((await audit(lab, "a@nogoogle.test", GOOGLE)).check("dns.receivers"))[
        "dns.receivers.not_ready"
    ]
    assert "v=spf1 mx include:_spf.google.com ~all" in (finding.fix or "")
    assert "google._domainkey" in (finding.fix or "")


async def test_each_lookup_is_asked_once(lab: Lab) -> None:
    client = client_for(lab.nameserver)
    report = await audit(lab, "a@spf-ten.test", client=client)
    assert report.check("dns.spf").status is Status.PASS
    assert len(client.queries) == len(set(client.queries))
    # The MX lookup is shared by dns.mx and the SPF "mx" term.
    assert client.queries.count(("spf-ten.test", "MX")) == 1


async def test_lookup_timings_are_recorded(lab: Lab) -> None:
    result = (await audit(lab, "a@google-style.test", GOOGLE)).check("dns.spf")
    lookups = items(result.details["lookups"])
    assert len(lookups) == 5
    for lookup in lookups:
        assert isinstance(lookup["ms"], float) and lookup["status"] == "ok"


# ------------------------------------------------------------------------------------------------
# "Could not tell" is never "missing"


def assert_only_unavailable(report: Report) -> None:
    for check in report.checks:
        assert check.status is Status.ERROR, check
        assert {f.code for f in check.findings} == {"dns.unavailable"}, check.findings
        for finding in check.findings:
            assert finding.severity is Severity.ERROR
            assert_well_formed(finding)


async def test_refused_is_unavailable_not_missing(lab: Lab) -> None:
    # NSD answers REFUSED for names outside its zones.
    report = await audit(lab, "a@example.com")
    assert_only_unavailable(report)
    finding = report.check("dns.spf").findings[0]
    assert items(finding.evidence["lookups"])[0]["status"] == "refused"


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A UDP socket that receives queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def closed_port() -> tuple[str, int]:
    """A UDP port nothing listens on (just released by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return ("127.0.0.1", port)


async def test_silent_server_is_unavailable_within_the_timeout(silent_server: tuple[str, int]) -> None:
    timeout = 0.5
    start = time.monotonic()
    report = await run_checks(
        account("a@google-style.test", GOOGLE), options=options(silent_server, timeout=timeout)
    )
    elapsed = time.monotonic() - start
    assert_only_unavailable(report)
    # Lookups run concurrently and each gives up after the timeout: the run costs about one timeout.
    assert timeout * 0.8 <= elapsed < timeout * 4, elapsed
    assert items(report.check("dns.mx").findings[0].evidence["lookups"])[0]["status"] == "timeout"


async def test_closed_port_is_unavailable(closed_port: tuple[str, int]) -> None:
    start = time.monotonic()
    report = await run_checks(
        account("a@google-style.test", GOOGLE), options=options(closed_port, timeout=1.0)
    )
    assert time.monotonic() - start < 4.0
    assert_only_unavailable(report)
