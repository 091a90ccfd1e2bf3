"""The runner: concurrency, the deadline, bugs turned into results, secrets scrubbed."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._models import Account, Severity, Status
from inboxcheck._options import CheckOptions, Family
from inboxcheck._runner import run_checks
from inboxcheck._secrets import Scrubber
from tests.helpers import CANARY, custom_payload

ACCOUNT = Account.model_validate(custom_payload())


def _sleeper(seconds: float) -> CheckSpec:
    async def run(ctx: CheckContext) -> Outcome:
        await asyncio.sleep(seconds)
        return Outcome(summary=f"slept {seconds}")

    return CheckSpec(f"test.sleep_{int(seconds * 1000)}", "Sleeper", Family.ACCOUNT, run)


async def test_independent_checks_run_concurrently() -> None:
    specs = [_sleeper(0.3), _sleeper(0.31), _sleeper(0.32)]
    start = time.perf_counter()
    report = await run_checks(ACCOUNT, specs=specs)
    elapsed = time.perf_counter() - start
    assert [c.status for c in report.checks] == [Status.PASS] * 3
    # Run one after another they would take 0.93 s.
    assert elapsed < 0.8


async def test_a_check_past_the_deadline_becomes_an_error_and_others_keep_their_results() -> None:
    specs = [_sleeper(0.01), _sleeper(30)]
    start = time.perf_counter()
    report = await run_checks(ACCOUNT, specs=specs, options=CheckOptions(deadline=0.3))
    assert time.perf_counter() - start < 2
    fast, slow = report.checks
    assert fast.status is Status.PASS
    assert slow.status is Status.ERROR
    assert [f.code for f in slow.findings] == ["run.deadline_exceeded"]
    assert report.exit_code == 3


async def test_a_crashing_check_is_reported_as_a_bug_not_raised() -> None:
    async def boom(ctx: CheckContext) -> Outcome:
        raise RuntimeError("kaboom")

    specs = [CheckSpec("test.boom", "Boom", Family.ACCOUNT, boom), _sleeper(0.01)]
    report = await run_checks(ACCOUNT, specs=specs)
    boom_result = report.check("test.boom")
    assert boom_result.status is Status.ERROR
    assert boom_result.findings[0].code == "internal.bug"
    assert boom_result.traceback is not None and "kaboom" in boom_result.traceback
    assert "traceback" not in boom_result.model_dump()
    assert report.check("test.sleep_10").status is Status.PASS


async def test_needs_are_awaited_and_readable() -> None:
    seen: list[str] = []

    async def first(ctx: CheckContext) -> Outcome:
        await asyncio.sleep(0.05)
        seen.append("first")
        return Outcome(summary="first")

    async def second(ctx: CheckContext) -> Outcome:
        result = await ctx.result_of("test.first")
        assert result is not None
        seen.append("second")
        return Outcome(summary=f"after {result.summary}")

    specs = [
        CheckSpec("test.second", "Second", Family.ACCOUNT, second, needs=("test.first",)),
        CheckSpec("test.first", "First", Family.ACCOUNT, first),
    ]
    report = await run_checks(ACCOUNT, specs=specs)
    assert seen == ["first", "second"]
    assert report.check("test.second").summary == "after first"


async def test_secrets_are_scrubbed_from_every_result_even_when_a_check_leaks_them() -> None:
    plain_blob = base64.b64encode(f"\0sam@example.test\0{CANARY}".encode()).decode()

    async def leaky(ctx: CheckContext) -> Outcome:
        out = Outcome(summary=f"password {CANARY}")
        out.add("test.leak", Severity.WARN, f"server echoed {plain_blob}", reply=f"535 {CANARY}")
        return out

    report = await run_checks(ACCOUNT, specs=[CheckSpec("test.leak", "Leak", Family.ACCOUNT, leaky)])
    text = report.model_dump_json()
    assert CANARY not in text and plain_blob not in text
    assert "[redacted]" in text


async def test_families_select_checks() -> None:
    spec = _sleeper(0.01)
    dns_spec = CheckSpec("test.dns", "D", Family.DNS, spec.run)
    report = await run_checks(
        ACCOUNT, specs=[spec, dns_spec], options=CheckOptions(families=frozenset({Family.DNS}))
    )
    assert [c.name for c in report.checks] == ["test.dns"]


async def test_secrets_are_scrubbed_from_a_bug_traceback() -> None:
    async def crash(ctx: CheckContext) -> Outcome:
        raise ValueError(f"wrapped {ctx.account.smtp_password.get_secret_value()}")

    report = await run_checks(ACCOUNT, specs=[CheckSpec("test.crash", "Crash", Family.ACCOUNT, crash)])
    result = report.check("test.crash")
    assert result.traceback is not None and "wrapped [redacted]" in result.traceback
    assert CANARY not in result.traceback


async def test_a_one_letter_password_does_not_mangle_names_or_codes() -> None:
    account = Account.model_validate(custom_payload(smtp_password="s", imap_password="s"))

    async def quoting(ctx: CheckContext) -> Outcome:
        out = Outcome(summary="dns.spf says s")
        out.add("test.spf_s", Severity.WARN, "the server echoed s back", reply="535 s")
        return out

    report = await run_checks(account, specs=[CheckSpec("test.spf_s", "SPF s", Family.ACCOUNT, quoting)])
    result = report.check("test.spf_s")
    assert result.title == "SPF s"
    assert result.findings[0].code == "test.spf_s"
    assert result.findings[0].evidence["reply"] == "535 [redacted]"
    assert result.summary == "dns.spf says [redacted]"


async def test_a_result_whose_json_holds_no_secret_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The walk visits every string of every result: the largest share of a batch's redaction cost.
    walked: list[object] = []
    real_json = Scrubber.json

    def counting(self: Scrubber, value: Any, **kwargs: Any) -> Any:
        walked.append(value)
        return real_json(self, value, **kwargs)

    monkeypatch.setattr(Scrubber, "json", counting)

    async def clean(ctx: CheckContext) -> Outcome:
        out = Outcome(summary="nothing secret")
        out.add("test.clean", Severity.WARN, "235 2.7.0 Authentication successful", reply="235 ok")
        return out

    async def leaky(ctx: CheckContext) -> Outcome:
        return Outcome(summary=f"echoed {CANARY}")

    report = await run_checks(
        ACCOUNT,
        specs=[
            CheckSpec("test.clean", "Clean", Family.ACCOUNT, clean),
            CheckSpec("test.leak", "Leak", Family.ACCOUNT, leaky),
        ],
    )
    assert len(walked) == 1, "only the result with a secret in it is walked"
    assert report.check("test.leak").summary == "echoed [redacted]"
    assert report.check("test.clean").findings[0].evidence["reply"] == "235 ok"
