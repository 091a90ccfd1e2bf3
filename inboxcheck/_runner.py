"""The library's ``check`` / ``check_sync``, and the runner behind every command: the registered checks
for one account, concurrently, within the run's deadline.

Independent checks start together, so an account costs about its slowest check. A check that raises
becomes an ``error`` result saying it is a bug (traceback kept for ``--debug``); a check still running
at the deadline becomes an ``error`` result saying so. Nothing a check does can sink the run.

Live evidence beats offline rules: once every check has finished, a ``fail`` that an offline check
predicted about a server (``Outcome.predict``) where this run's live login worked, on the
same host, port and TLS mode, becomes a ``warning`` (see ``inboxcheck._check``).

Cancelling the run cancels every check and every task a check started (``CheckContext.start``)
before the cancellation returns, so nothing carries on talking to a server the caller gave up on.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from inboxcheck._check import (
    LEFTOVER_BOUND,
    LOCAL_SHORTAGE,
    RESOURCES_FIX,
    CheckContext,
    CheckSpec,
    Outcome,
    SendJournal,
)
from inboxcheck._endpoint import Endpoint
from inboxcheck._errors import InboxcheckError, OptionsError
from inboxcheck._input import parse_account
from inboxcheck._limits import RECOMMENDATION_FACT, recommend_daily_limit
from inboxcheck._models import (
    Account,
    CheckResult,
    Finding,
    PresetRef,
    Report,
    Severity,
    Status,
    finding,
)
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets
from inboxcheck._secrets import Scrubber

if TYPE_CHECKING:
    from inboxcheck.dns.client import DnsClient

__all__ = ["as_account", "build_options", "check", "check_sync", "refuse_inside_a_loop", "run_checks"]


async def run_checks(
    account: Account,
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    dns_client: DnsClient | None = None,
    specs: Sequence[CheckSpec] | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    leading: Sequence[CheckResult] = (),
    send_journal: SendJournal | None = None,
) -> Report:
    """Check ``account`` and return the report. Never raises for what the account or network does.

    ``leading`` results (what discovery filled in a partial payload) open the report and count
    towards its verdict. ``send_journal`` is a batch log's part in the send test
    (:class:`~inboxcheck._check.SendJournal`)."""
    from inboxcheck.checks.login.microsoft import limit_caveats

    options = options or CheckOptions()
    presets = presets if presets is not None else load_presets()
    if specs is None:
        from inboxcheck.checks import registered_checks

        specs = registered_checks(options.families)
    selected = [spec for spec in specs if spec.selected_by(options)]
    ctx = CheckContext.for_account(
        account,
        options=options,
        presets=presets,
        ssl_context=ssl_context,
        dns_client=dns_client,
        clock=clock,
        now=now,
    )
    ctx.send_journal = send_journal
    generated_at = now()
    started = clock()
    results = _weigh_live_dkim([*leading, *await _run_all(ctx, selected)])
    redactor = _Redactor(ctx.scrubber)
    results = [redactor.result(result) for result in results]
    findings = [f for result in results for f in result.findings]
    return Report(
        generated_at=generated_at,
        duration_ms=_ms(clock() - started),
        account=account.view(),
        preset=PresetRef(id=match.preset.id, name=match.preset.name, matched_by=match.matched_by)
        if (match := ctx.match)
        else None,
        checks=tuple(results),
        verdict=Report.verdict_of(results),
        counts=dict(Counter(result.status for result in results)),
        recommended_daily_limit=ctx.facts.get(RECOMMENDATION_FACT)
        or recommend_daily_limit(
            stage=options.stage,
            preset=ctx.preset,
            findings=findings,
            domain=account.domain,
            caveats=limit_caveats(ctx),
        ),
    )


async def _run_all(ctx: CheckContext, specs: Sequence[CheckSpec]) -> list[CheckResult]:
    tasks: dict[str, asyncio.Task[CheckResult]] = {}
    predictions: dict[str, list[_Prediction]] = {}
    try:
        for spec in specs:
            task = asyncio.ensure_future(_run_one(ctx, spec, predictions))
            tasks[spec.name] = task
            ctx._register(spec.name, task)
        if not tasks:
            return []
        _done, pending = await asyncio.wait(tasks.values(), timeout=ctx.remaining())
    finally:
        # Reached early only when the run itself is cancelled: every check stops before the run
        # returns, so no login carries on sending to a server the caller has given up on.
        pending = {task for task in tasks.values() if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await ctx.stop_started()
        left = await _undo_leftovers(ctx)
    results = []
    for spec in specs:
        task = tasks[spec.name]
        if task.cancelled() or task in pending:
            result = _deadline_result(ctx, spec)
            if spec.name in left:
                findings = (*result.findings, left[spec.name])
                result = result.model_copy(
                    update={"findings": findings, "status": CheckResult.status_of(findings)}
                )
            results.append(result)
        else:
            results.append(_weigh_live_evidence(ctx, task.result(), predictions.get(spec.name, [])))
    return results


_Prediction = tuple[Finding, tuple[Endpoint, ...]]


async def _undo_leftovers(ctx: CheckContext) -> dict[str, Finding]:
    """Run what checks left to undo (:attr:`CheckContext.leftovers`), shielded from the run's own
    cancellation and within :data:`LEFTOVER_BOUND`; the findings of what could not be undone, by check.

    A second cancellation (a second Ctrl-C) stops waiting: each job then says itself what it left."""
    jobs = dict(ctx.leftovers)
    ctx.leftovers.clear()
    if not jobs:
        return {}

    async def undo() -> dict[str, Finding]:
        names = list(jobs)
        outcomes = await asyncio.gather(*(jobs[name]() for name in names), return_exceptions=True)
        return {name: out for name, out in zip(names, outcomes, strict=True) if isinstance(out, Finding)}

    task = asyncio.ensure_future(undo())
    try:
        async with asyncio.timeout(LEFTOVER_BOUND + 1):
            return await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        await asyncio.wait({task})
        return {}


def _weigh_live_evidence(
    ctx: CheckContext, result: CheckResult, predictions: list[_Prediction]
) -> CheckResult:
    """``result`` with each failure predicted about a server the live login got into made a warning."""
    findings = list(result.findings)
    changed = False
    for predicted, endpoints in predictions:
        if predicted.severity is not Severity.FAIL:
            continue
        proof = next((e for e in endpoints if e.same(ctx.logins.get(e.protocol))), None)
        if proof is None:
            continue
        index = next(i for i, f in enumerate(findings) if f is predicted)
        findings[index] = predicted.model_copy(
            update={
                "severity": Severity.WARN,
                "message": f"The {proof.protocol.upper()} login to {proof} worked in this run, so the "
                f"account works today; but this is not what the provider documents: {predicted.message}",
                "evidence": {**predicted.evidence, "live_login": str(proof)},
            }
        )
        changed = True
    if not changed:
        return result
    return result.model_copy(update={"findings": tuple(findings), "status": CheckResult.status_of(findings)})


def _weigh_live_dkim(results: list[CheckResult]) -> list[CheckResult]:
    """Live evidence outranks the guess: when the send test's message carried a valid DKIM signature at
    a selector the DNS check never tried, the DNS check's "no key found" does not hold and is cleared."""
    proof = next(
        (f for r in results for f in r.findings if f.code == "send.dkim.selector_unknown"),
        None,
    )
    if proof is None:
        return results
    out = []
    for result in results:
        if result.name == "dns.dkim" and any(f.code == "dns.dkim.missing" for f in result.findings):
            selector = proof.evidence.get("selector")
            findings = [
                f
                if f.code != "dns.dkim.missing"
                else finding(
                    "dns.dkim.seen_in_message",
                    Severity.INFO,
                    f"No key was found at the selectors tried, but the send test's message was signed with a "
                    f"valid key at selector {selector}: DKIM works for this mailbox.",
                    fix=f"Add --dkim-selector {selector} to later runs so the DNS check judges that key.",
                    selector=selector,
                    d=proof.evidence.get("d"),
                    selectors_tried=f.evidence.get("selectors_tried"),
                )
                for f in result.findings
            ]
            result = result.model_copy(
                update={
                    "findings": tuple(findings),
                    "status": CheckResult.status_of(findings),
                    "summary": f"DKIM proved by the send test at selector {selector}",
                }
            )
        out.append(result)
    return out


async def _run_one(
    ctx: CheckContext, spec: CheckSpec, predictions: dict[str, list[_Prediction]]
) -> CheckResult:
    for need in spec.needs:
        await ctx.result_of(need)
    start = ctx.clock()
    try:
        outcome = await spec.run(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the whole point: a bug in one check must not sink the run
        if isinstance(exc, OSError) and exc.errno in LOCAL_SHORTAGE:
            # This machine ran short (too many open files): no bug, and nothing about the account.
            return _resources_result(spec, exc, _ms(ctx.clock() - start))
        result = _bug_result(spec, exc, _ms(ctx.clock() - start))
        result._traceback = "".join(traceback.format_exception(exc))
        return result
    if outcome.predictions:
        predictions[spec.name] = outcome.predictions
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


def _resources_result(spec: CheckSpec, exc: OSError, duration_ms: float) -> CheckResult:
    return CheckResult(
        name=spec.name,
        title=spec.title,
        status=Status.ERROR,
        summary="this machine ran short of resources, so the check could not tell",
        duration_ms=duration_ms,
        findings=(
            finding(
                "run.resources",
                Severity.ERROR,
                f"The {spec.title} check stopped because this machine ran short of resources "
                f"({exc.strerror or type(exc).__name__}): a limit of this machine, not the account's "
                "fault, so it could not tell.",
                fix=RESOURCES_FIX,
                check=spec.name,
                errno=exc.errno,
            ),
        ),
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


# Fields that are identifiers chosen by inboxcheck, never text from a server: not scrubbed, so that a
# short password cannot mangle a check's name or a finding's code.
_STRUCTURAL: Final = frozenset({"name", "title", "status", "code", "severity", "duration_ms"})


class _Redactor:
    def __init__(self, scrubber: Scrubber) -> None:
        self.text = scrubber

    def result(self, result: CheckResult) -> CheckResult:
        """Defence in depth: no check should put a password in a result, and none can.

        Walks every string value in the result (not its JSON text, where escaping would hide a secret),
        unless the JSON text proves that no string holds a secret: the common case, at a tenth of the cost.
        """
        tb = result.traceback
        if tb is None:
            try:
                document = result.model_dump_json()
            except PydanticSerializationError:
                document = None  # text pydantic cannot write (a lone surrogate): the walk decides
            if document is not None and not self.text.could_be_in_json(document):
                return result
        data = result.model_dump(mode="json")
        clean_data = self.text.json(data, identifiers=_STRUCTURAL)
        clean_tb = self.text(tb) if tb is not None else None
        if clean_data == data and clean_tb == tb:
            return result
        clean = CheckResult.model_validate(clean_data)
        clean._traceback = clean_tb
        return clean


def build_options(options: CheckOptions | None, overrides: Mapping[str, Any]) -> CheckOptions:
    """``options`` as given, or one built from keyword overrides, with an error naming a bad one."""
    if options is not None and overrides:
        raise OptionsError("pass either options= or individual option keywords, not both")
    if options is not None:
        return options
    try:
        return CheckOptions(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise OptionsError(f"invalid options: {problems}") from None


def as_account(account: Account | Mapping[str, Any]) -> Account:
    """An :class:`Account` as given, or validated from a payload mapping (passwords from the mapping
    only: a library call never reads the environment or prompts)."""
    if isinstance(account, Account):
        return account
    return parse_account(dict(account), source="account", env={})


async def check(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **option_overrides: Any,
) -> Report:
    """Check one account and return its report.

    ``account`` is an :class:`Account` or a payload mapping in the platform's format. Options come as
    ``options=CheckOptions(...)`` or as keywords (``timeout=5, nameservers=["127.0.0.1:5353"]``). The
    TLS context can be passed in; by default it is built from the options (DNS servers and timeouts
    are options: ``nameservers=``, ``timeout=``).

    Raises :class:`AccountError` or :class:`OptionsError` for unusable input; every finding about
    the account is in the report, never raised.
    """
    return await run_checks(
        as_account(account),
        options=build_options(options, option_overrides),
        presets=presets,
        ssl_context=ssl_context,
    )


def check_sync(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **option_overrides: Any,
) -> Report:
    """:func:`check` for code that has no event loop running; inside one, raises :class:`InboxcheckError`."""
    refuse_inside_a_loop("check_sync", "check")
    return asyncio.run(
        check(account, options=options, presets=presets, ssl_context=ssl_context, **option_overrides)
    )


def refuse_inside_a_loop(name: str, coroutine: str) -> None:
    """Raise when called from a running event loop, where ``asyncio.run`` cannot work.

    Called before the coroutine is created, so a refused call leaves no "never awaited" warning.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InboxcheckError(
        f"inboxcheck.{name}() was called inside a running event loop, where it cannot run; "
        f"use `await inboxcheck.{coroutine}(...)` there instead"
    )
