"""Hostile records for the SPF evaluator: whatever a domain publishes, ``check_host`` ends in one of
the seven results, within the limits of RFC 7208 4.6.4, and never raises.

The lookups are answered from memory through the evaluator's injected ``resolve`` (the RFC 7208
suites in test_spf_suite.py cover the real DNS path): hypothesis needs thousands of evaluations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import dns.rrset
from hypothesis import HealthCheck, given, settings, strategies as st

from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.spf_eval import SpfEvaluator, SpfResult

_NAMES: Final = ["a.test", "b.test", "c.test", "%{d}", "%{i}.a.test", "%{l}.b.test", "%{p}", "%{o}"]
_MACROS: Final = st.builds(
    lambda letter, digits, reverse, delimiters: "%{" + letter + digits + reverse + delimiters + "}",
    st.sampled_from("slodiphvSLODIPHV" * 4 + "crtx"),  # mostly valid in a domain-spec
    st.sampled_from(["", "0", "1", "2", "12", "9" * 5, "9" * 5000]),
    st.sampled_from(["", "r", "R"]),
    st.text(alphabet=".-+,/_=", max_size=3),
)
_DOMAIN: Final = st.one_of(st.sampled_from(_NAMES), st.builds(lambda m: m + ".x.test", _MACROS))
_DNS_TERM: Final = st.builds(
    lambda q, kind, domain, cidr: f"{q}{kind}:{domain}{cidr if kind in ('a', 'mx') else ''}",
    st.sampled_from(["", "+", "-", "~", "?"]),
    st.sampled_from(["a", "mx", "ptr", "include", "exists"]),
    _DOMAIN,
    st.sampled_from(["", "", "", "/24", "//64", "/0//0", "/33"]),
)
_TERM: Final = st.one_of(
    _DNS_TERM,
    _DNS_TERM,
    _DNS_TERM,
    st.sampled_from(["a", "mx", "ptr", "ip4:192.0.2.0/24", "ip6:2001:db8::/32", "-all", "~all"]),
)
_MODIFIERS: Final = st.lists(
    st.one_of(st.builds(lambda d: f"redirect={d}", _DOMAIN), st.builds(lambda d: f"exp={d}", _DOMAIN)),
    max_size=2,
    unique_by=lambda text: text.split("=")[0],
)
# Now and then a term of printable junk, which must end in permerror, not in a crash.
_JUNK: Final[st.SearchStrategy[list[str]]] = st.one_of(
    st.just([]),
    st.just([]),
    st.just([]),
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12), max_size=1
    ),
)
_RECORD: Final = st.builds(
    lambda terms, modifiers, junk: " ".join(["v=spf1", *terms, *modifiers, *junk]),
    st.lists(_TERM, max_size=8),
    _MODIFIERS,
    _JUNK,
)
_ZONE: Final = st.fixed_dictionaries(
    {
        "records": st.lists(_RECORD, min_size=1, max_size=4),
        "explanations": st.lists(st.text(max_size=40), min_size=1, max_size=2),
        "mx": st.integers(min_value=0, max_value=14),
        "ptr": st.integers(min_value=0, max_value=14),
        "fail": st.sampled_from(["", "TXT", "A", "MX", "PTR"]),
    }
)


def _resolver(zone: dict[str, object]) -> Callable[[str, str], Awaitable[DnsAnswer]]:
    records = zone["records"]
    explanations = zone["explanations"]
    assert isinstance(records, list) and isinstance(explanations, list)

    async def resolve(name: str, rdtype: str) -> DnsAnswer:
        if rdtype == zone["fail"] and name.startswith("c"):
            return DnsAnswer(name, rdtype, DnsStatus.TIMEOUT, error="timeout")
        # The domain evaluated always publishes the first record; other names one of them, an
        # explanation, or nothing.
        index = 0 if name == "a.test" else sum(name.encode()) % (len(records) + 2)
        if rdtype == "TXT":
            if index >= len(records):
                text = explanations[index % len(explanations)]
                if not text.isascii():
                    return DnsAnswer(name, rdtype, DnsStatus.NODATA)
            else:
                text = records[index]
            chunks = [text[i : i + 200] for i in range(0, len(text), 200)] or [""]
            quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
            return DnsAnswer(
                name, rdtype, DnsStatus.OK, rrset=dns.rrset.from_text(name, 60, "IN", "TXT", quoted)
            )
        if index == 1:
            return DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN)
        if rdtype == "A":
            return DnsAnswer(
                name, rdtype, DnsStatus.OK, rrset=dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1")
            )
        if rdtype == "AAAA":
            return DnsAnswer(name, rdtype, DnsStatus.NODATA)
        count = zone["mx"] if rdtype == "MX" else zone["ptr"]
        assert isinstance(count, int)
        if rdtype == "MX":
            values = [f"{i} m{i}.a.test." for i in range(count)] or ["0 ."]
        else:
            values = [f"p{i}.b.test." for i in range(count)]
        if not values:
            return DnsAnswer(name, rdtype, DnsStatus.NODATA)
        return DnsAnswer(
            name, rdtype, DnsStatus.OK, rrset=dns.rrset.from_text(name, 60, "IN", rdtype, *values)
        )

    return resolve


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=_ZONE, ip=st.sampled_from(["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"]))
def test_any_record_ends_in_a_result_within_the_limits(zone: dict[str, object], ip: str) -> None:
    evaluator = SpfEvaluator(_resolver(zone), ip, sender="jane@a.test", helo="mx.a.test")
    result = asyncio.run(evaluator.check_host("a.test"))
    assert result.result in set(SpfResult)
    assert result.lookup_terms <= 11
    assert result.void_lookups <= 3
    # 10 terms, each at most 1 + 10 lookups (mx, ptr), plus the record itself, the explanation and
    # the validated names behind %{p}: a hostile record cannot make a receiver ask without bound.
    assert len(result.queries) <= 10 * 11 + 1 + 2 + 11
    if result.explanation is not None:
        assert result.result is SpfResult.FAIL
