"""Runs the registered checks for one account, concurrently, within the run's deadline.

Independent checks start together, so an account costs about its slowest check. A check that raises
becomes an ``error`` result saying it is a bug (traceback kept for ``--debug``); a check still running
at the deadline becomes an ``error`` result saying so. Nothing a check does can sink the run.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inboxcheck._check import CheckContext, CheckSpec, Outcome, finding
from inboxcheck._limits import recommend_daily_limit
from inboxcheck._models import (
    Account,
    CheckResult,
    PresetRef,
    Report,
    Severity,
    Status,
)
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets

if TYPE_CHECKING:
    import dns.asyncresolver

    from inboxcheck._dnsclient import DnsClient

__all__ = ["run_checks"]


async def run_checks(
    account: Account,
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    dns_client: DnsClient | None = None,
    specs: Sequence[CheckSpec] | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """Check ``account`` and return the report. Never raises for what the account or network does."""
    options = options or CheckOptions()
    presets = presets if presets is not None else load_presets()
    if specs is None:
        from inboxcheck.checks import registered_checks

        specs = registered_checks()
    selected = [spec for spec in specs if spec.family in options.families]
    match = presets.match(
        smtp_host=account.smtp_host, imap_host=account.imap_host, inbox_type=account.inbox_type
    )
    ctx = CheckContext(
        account,
        options=options,
        presets=presets,
        match=match,
        resolver=resolver,
        ssl_context=ssl_context,
        dns_client=dns_client,
        clock=clock,
        now=now,
    )
    generated_at = now()
    started = clock()
    results = await _run_all(ctx, selected)
    results = [_redact(result, _secret_forms(account)) for result in results]
    findings = [f for result in results for f in result.findings]
    return Report(
        generated_at=generated_at,
        duration_ms=_ms(clock() - started),
        account=account.view(),
        preset=PresetRef(id=match.preset.id, name=match.preset.name, matched_by=match.matched_by)
        if match
        else None,
        checks=tuple(results),
        verdict=Report.verdict_of(results),
        counts=dict(Counter(result.status for result in results)),
        recommended_daily_limit=recommend_daily_limit(
            stage=options.stage, preset=ctx.preset, findings=findings
        ),
    )


async def _run_all(ctx: CheckContext, specs: Sequence[CheckSpec]) -> list[CheckResult]:
    tasks: dict[str, asyncio.Task[CheckResult]] = {}
    for spec in specs:
        task = asyncio.ensure_future(_run_one(ctx, spec))
        tasks[spec.name] = task
        ctx._register(spec.name, task)
    if not tasks:
        return []
    _done, pending = await asyncio.wait(tasks.values(), timeout=ctx.remaining())
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    results = []
    for spec in specs:
        task = tasks[spec.name]
        if task.cancelled() or task in pending:
            results.append(_deadline_result(ctx, spec))
        else:
            results.append(task.result())
    return results


async def _run_one(ctx: CheckContext, spec: CheckSpec) -> CheckResult:
    for need in spec.needs:
        await ctx.result_of(need)
    start = ctx.clock()
    try:
        outcome = await spec.run(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the whole point: a bug in one check must not sink the run
        result = _bug_result(spec, exc, _ms(ctx.clock() - start))
        result._traceback = "".join(traceback.format_exception(exc))
        return result
    return _result(spec, outcome, _ms(ctx.clock() - start))


def _result(spec: CheckSpec, outcome: Outcome, duration_ms: float) -> CheckResult:
    status = Status.SKIPPED if outcome.skipped else CheckResult.status_of(outcome.findings)
    return CheckResult(
        name=spec.name,
        title=spec.title,
        status=status,
        summary=outcome.summary,
        duration_ms=duration_ms,
        findings=tuple(outcome.findings),
        details=outcome.details,
    )


def _bug_result(spec: CheckSpec, exc: Exception, duration_ms: float) -> CheckResult:
    return CheckResult(
        name=spec.name,
        title=spec.title,
        status=Status.ERROR,
        summary="the check stopped on an unexpected error, so it could not tell",
        duration_ms=duration_ms,
        findings=(
            finding(
                "internal.bug",
                Severity.ERROR,
                f"The {spec.title} check hit an unexpected {type(exc).__name__}; this is a bug in "
                "inboxcheck, not a finding about the account.",
                fix="Run again with --debug and report the traceback to the inboxcheck developers.",
                check=spec.name,
                exception=type(exc).__name__,
            ),
        ),
    )


def _deadline_result(ctx: CheckContext, spec: CheckSpec) -> CheckResult:
    return CheckResult(
        name=spec.name,
        title=spec.title,
        status=Status.ERROR,
        summary=f"still running when the run's deadline of {ctx.options.deadline:g} s passed",
        duration_ms=_ms(ctx.clock() - ctx.started),
        findings=(
            finding(
                "run.deadline_exceeded",
                Severity.ERROR,
                f"The {spec.title} check did not finish within the run's deadline of "
                f"{ctx.options.deadline:g} s, so it could not tell.",
                fix="Run again with a longer --deadline, or check why the server answers so slowly.",
                deadline_s=ctx.options.deadline,
            ),
        ),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _secret_forms(account: Account) -> list[str]:
    """Every form in which a password could surface in a server's echo or an exception."""
    forms: set[str] = set()
    pairs = (
        (account.smtp_username, account.smtp_password.get_secret_value()),
        (account.imap_username, account.imap_password.get_secret_value()),
    )
    for username, password in pairs:
        forms.add(password)
        forms.add(base64.b64encode(password.encode()).decode())
        forms.add(base64.b64encode(f"\0{username}\0{password}".encode()).decode())
    # Very short passwords would redact ordinary words; the platform allows them, so keep them all
    # but the empty string.
    return sorted((f for f in forms if f), key=len, reverse=True)


def _redact(result: CheckResult, secrets: list[str]) -> CheckResult:
    """Defence in depth: no check should put a password in a result, and none can.

    Walks every string in the result (not its JSON text, where escaping would hide a secret).
    """
    data = result.model_dump(mode="json")
    tb = result.traceback
    clean_data = _scrub(data, secrets)
    clean_tb = _scrub(tb, secrets) if tb is not None else None
    if clean_data == data and clean_tb == tb:
        return result
    clean = CheckResult.model_validate(clean_data)
    clean._traceback = clean_tb if isinstance(clean_tb, str) else None
    return clean


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value
