"""The deliverability checks (``--deliverability``): FCrDNS of the SMTP host and DNS blocklists.

Every lookup goes to the lab's NSD, whose ``zen.bl.test`` and ``dbl.bl.test`` zones act as an IP and
a domain list (listed, not listed, and the in-band refusals), and whose ``127.in-addr.arpa`` has a
matching PTR for 127.0.0.1 and a non-matching one for 127.0.0.3. No test asks a real list.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from inboxcheck._errors import OptionsError
from inboxcheck._models import Account, CheckResult, Report, Severity, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import build_options, run_checks
from inboxcheck.checks import dns
from inboxcheck.checks.dns.blocklists import known_blocklists, select_blocklists

LISTS = ("ip:zen.bl.test", "domain:dbl.bl.test")


async def _run(lab: Any, name: str, lists: tuple[str, ...] = LISTS, **changes: Any) -> CheckResult:
    address, port = lab.nameserver
    options = CheckOptions(
        timeout=3.0,
        deadline=20,
        nameservers=(parse_nameserver(f"{address}:{port}"),),
        blocklist_zones=lists,
    )
    payload = lab.account("alice@lab.test", smtp="submission", imap="imaps") | changes
    specs = [spec for spec in dns.CHECKS if spec.name == name]
    report: Report = await run_checks(Account.model_validate(payload), options=options, specs=specs)
    return report.check(name)


def _codes(result: CheckResult) -> list[str]:
    return [f.code for f in result.findings]


# --- FCrDNS --------------------------------------------------------------------------------------


@pytest.mark.lab
async def test_the_lab_host_is_forward_confirmed(lab: Any) -> None:
    result = await _run(lab, "dns.fcrdns")
    assert result.status is Status.PASS, result
    assert result.details["addresses"] == [
        {
            "address": "127.0.0.1",
            "ptr_query": "1.0.0.127.in-addr.arpa",
            "ptr": ["mail.lab.test"],
            "result": "confirmed",
            "name": "mail.lab.test",
        }
    ]


@pytest.mark.lab
async def test_a_ptr_that_does_not_point_back_is_a_warning(lab: Any) -> None:
    result = await _run(lab, "dns.fcrdns", smtp_host="badptr.lab.test")
    assert _codes(result) == ["dns.fcrdns.mismatch"]
    finding = result.findings[0]
    assert finding.severity is Severity.WARN
    assert finding.evidence["ptr"] == ["dynamic-127-0-0-3.isp.test"]


# --- blocklists ----------------------------------------------------------------------------------


@pytest.mark.lab
async def test_not_listed(lab: Any) -> None:
    result = await _run(lab, "dns.blocklists")
    assert result.status is Status.PASS, result
    checked: Any = result.details["checked"]
    assert [(c["query"], c["result"]) for c in checked] == [
        ("1.0.0.127.zen.bl.test", "not_listed"),
        ("lab.test.dbl.bl.test", "not_listed"),
    ]


@pytest.mark.lab
async def test_a_listed_address_names_the_list_and_its_reason(lab: Any) -> None:
    # imap2.lab.test is 127.0.0.2, the documented test entry of IP lists.
    result = await _run(lab, "dns.blocklists", ("ip:zen.bl.test",), smtp_host="imap2.lab.test")
    assert _codes(result) == ["dns.blocklist.listed"]
    finding = result.findings[0]
    assert finding.severity is Severity.FAIL
    assert finding.evidence["zone"] == "zen.bl.test" and finding.evidence["answers"] == ["127.0.0.2"]
    assert "Listed by the inboxcheck lab" in finding.message


@pytest.mark.lab
async def test_a_listed_domain_names_the_delisting_page_of_a_known_list(lab: Any) -> None:
    result = await _run(lab, "dns.blocklists", ("domain:dbl.bl.test",), email_address="sam@spammy.test")
    finding = result.findings[0]
    assert (finding.code, finding.severity) == ("dns.blocklist.listed", Severity.FAIL)
    assert finding.evidence["checked"] == "spammy.test"


@pytest.mark.lab
@pytest.mark.parametrize(
    ("changes", "lists", "answer"),
    [
        ({"smtp_host": "127.0.0.254"}, ("ip:zen.bl.test",), "127.255.255.254"),
        ({"smtp_host": "127.0.0.255"}, ("ip:zen.bl.test",), "127.255.255.255"),
        ({"smtp_host": "127.0.0.252"}, ("ip:zen.bl.test",), "127.255.255.252"),
        ({"email_address": "sam@refused.test"}, ("domain:dbl.bl.test",), "127.255.255.254"),
    ],
)
async def test_a_refusal_answer_is_could_not_tell_never_listed(
    lab: Any, changes: dict[str, str], lists: tuple[str, ...], answer: str
) -> None:
    result = await _run(lab, "dns.blocklists", lists, **changes)
    assert result.status is Status.ERROR, result
    assert _codes(result) == ["dns.blocklist.refused"]
    assert result.findings[0].evidence["answers"] == [answer]
    # A refusal is no answer: the summary may not call the address "not listed" either.
    assert "listed" not in result.summary
    assert result.summary.startswith("could not tell")


@pytest.mark.lab
async def test_a_list_that_does_not_answer_is_could_not_tell(lab: Any) -> None:
    # The lab's NSD refuses names outside its zones, as a resolver that cannot reach a list fails.
    result = await _run(lab, "dns.blocklists", ("ip:zen.nowhere.invalid",))
    assert result.status is Status.ERROR
    assert _codes(result) == ["dns.blocklist.unavailable"]
    assert "not listed" not in result.summary


@pytest.mark.lab
async def test_lists_that_answered_and_lists_that_did_not_are_told_apart(lab: Any) -> None:
    result = await _run(lab, "dns.blocklists", ("ip:zen.bl.test", "ip:zen.nowhere.invalid"))
    assert result.status is Status.ERROR
    assert result.summary == "not listed on the 1 lookups answered; could not tell for 1"


def test_the_default_lists_and_the_ways_to_name_one() -> None:
    defaults = select_blocklists(())
    assert {b.id for b in defaults} >= {"spamhaus-zen", "spamhaus-dbl", "spamcop", "barracuda"}
    assert all(b.delist for b in known_blocklists())
    (zen,) = select_blocklists(("spamhaus-zen",))
    assert zen.zone == "zen.spamhaus.org" and "127.255.255.254" in zen.refused
    assert select_blocklists(("zen.spamhaus.org",)) == (zen,)
    (custom,) = select_blocklists(("domain:dbl.bl.test",))
    assert (custom.kind, custom.zone, custom.delist) == ("domain", "dbl.bl.test", None)
    assert select_blocklists(("bl.example.test",))[0].kind == "ip"


@pytest.mark.parametrize("bad", ["url:zen.bl.test", "nodots", "ip:"])
def test_a_list_that_cannot_be_asked_is_refused_with_the_options(bad: str) -> None:
    with pytest.raises(OptionsError):
        select_blocklists((bad,))
    with pytest.raises(OptionsError, match="blocklist"):
        build_options(None, {"blocklist_zones": (bad,)})


@pytest.mark.lab
@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_an_ipv6_smtp_host_is_not_looked_up_as_a_name(lab: Any, host: str) -> None:
    result = await _run(lab, "dns.blocklists", smtp_host=host)
    assert "dns.blocklist.unavailable" not in _codes(result), result
    assert result.status is Status.PASS
    checked: Any = result.details["checked"]
    assert [c["query"] for c in checked] == ["lab.test.dbl.bl.test"]


@pytest.mark.lab
async def test_an_ip_host_without_reverse_dns_has_no_ptr(lab: Any) -> None:
    # An IP literal is its own address; the lab's reverse zone names 127.0.0.1 and 127.0.0.3 only.
    result = await _run(lab, "dns.fcrdns", smtp_host="127.0.0.9")
    assert _codes(result) == ["dns.fcrdns.no_ptr"]
    assert result.status is Status.WARN
    assert result.details["addresses"] == [
        {"address": "127.0.0.9", "ptr_query": "9.0.0.127.in-addr.arpa", "ptr": [], "result": "no_ptr"}
    ]


@pytest.mark.lab
async def test_a_refused_reverse_lookup_is_could_not_tell_not_no_ptr(lab: Any) -> None:
    # The lab's server serves no ip6.arpa zone and answers REFUSED: that says nothing about a PTR.
    result = await _run(lab, "dns.fcrdns", smtp_host="::1")
    assert _codes(result) == ["dns.fcrdns.unavailable"]
    assert result.status is Status.ERROR
    assert result.details["addresses"] == [
        {
            "address": "::1",
            "ptr_query": ipaddress.ip_address("::1").reverse_pointer,
            "result": "could_not_tell",
        }
    ]
