"""The whole RFC 7208 test suite (and the older RFC 4408 one) against the public ``check_host``.

Each scenario's zone data is served by a DNS server on loopback (tests/spf_suite.py says which and
why) and every lookup goes through the same DNS client as every check. Every case must agree with
the suite, explanations included; the suite's ``DEFAULT`` explanation is the receiver's own text,
which here is "no explanation from the domain" (``explanation is None``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Final

import pytest

import inboxcheck
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.spf import is_spf_record, parse_spf
from tests.spf_suite import Case, SuiteDnsServer, load_suite, suite_file

# Cases not evaluated, with the reason. Every other case must agree.
LEFT_OUT: Final[dict[str, str]] = {}

# Short enough that the suite's deliberate timeouts cost little, long enough for a loaded CI machine
# to answer every other query from loopback.
_TIMEOUT: Final = 1.5
_AT_ONCE: Final = 16


async def _disagreements(name: str) -> tuple[int, list[str]]:
    """Every case of one suite file, each scenario on its own server, all at once (bounded)."""
    scenarios = load_suite(suite_file(name))
    problems: list[str] = []
    limit = asyncio.Semaphore(_AT_ONCE)

    async def one(case: Case, server: SuiteDnsServer) -> None:
        async with limit:
            problem = await _evaluate(case, server)
        if problem:
            problems.append(problem)

    async with contextlib.AsyncExitStack() as stack:
        jobs: list[Coroutine[Any, Any, None]] = []
        for scenario in scenarios:
            server = await stack.enter_async_context(SuiteDnsServer())
            server.load(scenario.zone)
            jobs.extend(one(case, server) for case in scenario.cases if case.id not in LEFT_OUT)
        await asyncio.gather(*jobs)
    return len(jobs), problems


async def _evaluate(case: Case, server: SuiteDnsServer) -> str | None:
    if case.mailfrom:
        domain, sender = case.mailfrom.rpartition("@")[2], case.mailfrom
    else:
        domain, sender = case.helo, f"postmaster@{case.helo}"
    got = await inboxcheck.check_host(
        case.host,
        domain,
        sender=sender,
        helo=case.helo,
        nameservers=[server.nameserver],
        timeout=_TIMEOUT,
    )
    explanation = got.explanation if got.explanation is not None else "DEFAULT"
    if got.result.value not in case.results or (
        case.explanation is not None and explanation != case.explanation
    ):
        return (
            f"{case.id} ({case.spec}): expected {'/'.join(case.results)}"
            + (f" explanation {case.explanation!r}" if case.explanation is not None else "")
            + f", got {got.result.value} explanation {got.explanation!r} ({got.reason})"
        )
    return None


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cases"), [("rfc7208-tests.yml", 203), ("rfc4408-tests.yml", 191)])
async def test_spf_suite_agrees(name: str, cases: int) -> None:
    count, problems = await _disagreements(name)
    assert problems == [], f"{len(problems)} of {count} cases disagree:\n" + "\n".join(problems)
    assert count == cases - len(LEFT_OUT)


@pytest.mark.parametrize("name", ["rfc7208-tests.yml", "rfc4408-tests.yml"])
def test_the_dns_checks_parser_calls_no_valid_record_broken(name: str) -> None:
    """Every sender domain's record whose case does not end in permerror parses: the DNS check reads
    records with the same parser and must not call a valid one broken (it called 4 broken before)."""
    broken: list[str] = []
    checked = 0
    for scenario in load_suite(suite_file(name)):
        zone = {key.lower().rstrip("."): entries for key, entries in scenario.zone.items()}
        for case in scenario.cases:
            if "permerror" in case.results:
                continue
            domain = (case.mailfrom.rpartition("@")[2] if case.mailfrom else case.helo).lower().rstrip(".")
            texts = {
                "".join(value) if isinstance(value, list) else str(value)
                for entry in zone.get(domain, [])
                if isinstance(entry, dict)
                for rtype, value in entry.items()
                if rtype in ("SPF", "TXT") and value != "NONE"
            }
            records = [text for text in texts if is_spf_record(text)]
            if len(records) != 1:
                continue
            checked += 1
            try:
                parse_spf(records[0])
            except RecordSyntaxError as exc:
                broken.append(f"{case.id}: {records[0]!r}: {exc}")
    assert broken == []
    assert checked > 100
