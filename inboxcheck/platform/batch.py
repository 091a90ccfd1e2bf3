"""``connect --batch``: check every account of a file, then create on the platform those that passed.

Two phases, both resumable from the output file alone:

1. the batch check (:func:`run_batch`), which appends one ``check`` line per account;
2. the creates: every account whose check line passes the gate and has no ``create`` line yet is
   created, one by one or through the bulk endpoint (at most 100 a call), and a ``create`` line is
   appended for each as soon as its answer is known.

Each create carries an ``Idempotency-Key`` derived from the platform URL, the input line and the
address, so a create resumed after a crash carries the same key as the first attempt: a platform
that honours it answers with the original inbox, one that does not answers 409, and either way no
inbox is created twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from inboxcheck._batch import (
    BatchSummary,
    LoggedCreate,
    LoggedReport,
    parse_logged,
    read_batch,
    run_batch,
)
from inboxcheck._errors import InboxcheckError
from inboxcheck._jsonl import ResultLog
from inboxcheck._models import Account, Finding, Status
from inboxcheck._options import CheckOptions
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.gate import DailyLimitChoice, GateDecision, decide
from inboxcheck.platform.key import BULK_MAX_ITEMS
from inboxcheck.platform.outcomes import ApiOutcome

__all__ = ["ConnectBatchSummary", "CreateLine", "connect_batch"]


class CreateLine(BaseModel):
    """One create call's answer for one account, as appended to the output."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["create"] = "create"
    line: int
    email_address: str
    outcome: ApiOutcome
    inbox_id: str | None = None
    status: str | None = None
    daily_limit: int
    idempotency_key: str
    finding: Finding | None = None


@dataclass
class ConnectBatchSummary:
    check: BatchSummary
    creates: Counter[str] = field(default_factory=Counter)
    blocked: int = 0

    @property
    def exit_code(self) -> int:
        """The check's exit code, unless a create failed: then that failure's exit code."""
        failed = [o for o in self.creates if o != ApiOutcome.CREATED.value]
        if failed:
            return max(ApiOutcome(o).exit_code for o in failed)
        return self.check.exit_code

    def describe(self) -> str:
        created = self.creates.get(ApiOutcome.CREATED.value, 0)
        others = ", ".join(f"{n} {o}" for o, n in sorted(self.creates.items()) if o != "created")
        return (
            f"{self.check.describe()}\n"
            f"created {created} inbox(es) on the platform"
            + (f"; {others}" if others else "")
            + (f"; {self.blocked} blocked by their checks" if self.blocked else "")
        )


def idempotency_key(url: str, line: int, email: str) -> str:
    """The same key for the same account of the same file on every attempt and every resume."""
    digest = hashlib.sha256(f"{url}\n{line}\n{email.lower()}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass
class _Logged:
    """What the log says of one input line: its check (the parts a gate reads), whether answered."""

    checked: bool = False
    report: LoggedReport | None = None
    answered: bool = False


def _read_log(log: ResultLog) -> dict[int, _Logged]:
    logged: dict[int, _Logged] = {}
    for entry in log.records(parse_logged):
        state = logged.setdefault(entry.line, _Logged())
        if isinstance(entry, LoggedCreate):
            state.answered = True
            continue
        state.checked = True
        report = entry.report
        if report is not None:
            # Passed and skipped checks never block: dropping them keeps a large log's state small.
            kept = tuple(c for c in report.checks if c.status not in (Status.PASS, Status.SKIPPED))
            report = report.model_copy(update={"checks": kept})
        state.report = report
    return logged


# The accounts to create: input line, account, and the daily limit the gate chose.
_Pending = list[tuple[int, Account, DailyLimitChoice]]


def _gated(
    path: Path,
    logged: dict[int, _Logged],
    *,
    strict: bool,
    apply_recommended_limit: bool,
    env: dict[str, str] | None,
) -> Iterator[tuple[int, Account | None, GateDecision | None]]:
    """Each checked line not answered yet, with the gate's decision (None for an unusable line)."""
    for item in read_batch(path, env=env):
        state = logged.get(item.line)
        if state is None or not state.checked or state.answered:
            continue
        if item.account is None or state.report is None:
            yield item.line, None, None
            continue
        gate = decide(item.account, state.report, strict=strict, apply_recommended=apply_recommended_limit)
        yield item.line, item.account, gate


async def connect_batch(
    path: Path,
    *,
    output: Path,
    client: PlatformClient,
    options: CheckOptions,
    resume: bool = False,
    strict: bool = False,
    bulk: bool = False,
    apply_recommended_limit: bool = False,
    concurrency: int = 20,
    per_host: int = 4,
    env: dict[str, str] | None = None,
    on_create: Callable[[CreateLine], None] | None = None,
    **batch_options: Any,
) -> ConnectBatchSummary:
    """Check every account of ``path`` into ``output``, then create those that passed.

    ``output`` is locked from the first check to the last create: a second run on it refuses.
    """
    with ResultLog.open(output, not_same_as=path) as log:
        checked = await run_batch(
            path,
            output=log,
            options=options,
            resume=resume,
            concurrency=concurrency,
            per_host=per_host,
            env=env,
            **batch_options,
        )
        summary = ConnectBatchSummary(check=checked)
        # The log now holds a check line for every line of the input: the gate of a single connect
        # decides from each, and a create line anywhere in the log means that account is never
        # created again, whatever else in the log is damaged.
        pending: _Pending = []
        for line, account, gate in _gated(
            path,
            _read_log(log),
            strict=strict,
            apply_recommended_limit=apply_recommended_limit,
            env=env,
        ):
            if account is None or gate is None or not gate.passed:
                summary.blocked += 1
            else:
                pending.append((line, account, gate.daily_limit))

        def record(line: CreateLine) -> None:
            # A create is not undone by a crash: its line must survive one too.
            log.append((line.model_dump_json() + "\n").encode(), durable=True)
            summary.creates[line.outcome.value] += 1
            if on_create is not None:
                on_create(line)

        await (_create_bulk if bulk else _create_each)(pending, client=client, record=record)
        return summary


async def _create_bulk(
    pending: _Pending, *, client: PlatformClient, record: Callable[[CreateLine], None]
) -> None:
    url = str(client.url)
    for start in range(0, len(pending), BULK_MAX_ITEMS):
        group = pending[start : start + BULK_MAX_ITEMS]
        payloads = [account.api_payload(daily_limit=limit.value) for _, account, limit in group]
        key = idempotency_key(url, group[0][0], f"bulk:{len(group)}:" + group[0][1].email_address)
        outcome = await client.create_sender_accounts_bulk(payloads, idempotency_key=key)
        by_index = {item.index: item for item in outcome.items}
        for index, (line, account, _) in enumerate(group):
            item = by_index.get(index)
            created = outcome.outcome is ApiOutcome.CREATED and item is not None and item.created
            # A bulk call that went through but not for this item: the platform refused that item.
            refused = ApiOutcome.REJECTED if outcome.outcome is ApiOutcome.CREATED else outcome.outcome
            record(
                CreateLine(
                    line=line,
                    email_address=account.email_address,
                    outcome=ApiOutcome.CREATED if created else refused,
                    inbox_id=item.inbox_id if item else None,
                    daily_limit=payloads[index]["daily_limit"],
                    idempotency_key=key,
                    finding=None if created else outcome.finding,
                )
            )


async def _create_each(
    pending: _Pending, *, client: PlatformClient, record: Callable[[CreateLine], None]
) -> None:
    url = str(client.url)
    for line, account, choice in pending:
        limit = choice.value
        key = idempotency_key(url, line, account.email_address)
        created_outcome = await client.create_sender_account(
            account.api_payload(daily_limit=limit), idempotency_key=key
        )
        inbox = created_outcome.inbox
        record(
            CreateLine(
                line=line,
                email_address=account.email_address,
                outcome=created_outcome.outcome,
                inbox_id=inbox.id if inbox else None,
                status=inbox.status.value if inbox else None,
                daily_limit=limit,
                idempotency_key=key,
                finding=None if created_outcome.ok else created_outcome.finding,
            )
        )
        if created_outcome.outcome in (ApiOutcome.KEY_REJECTED, ApiOutcome.OUTCOME_UNKNOWN):
            # The key is wrong for every account, or the platform is in a state a person must look
            # at: stop rather than repeat the same failure for the rest of the file.
            break


def require_output(output: Path | None) -> Path:
    if output is None:
        raise InboxcheckError("connect --batch needs --output: it is the log the run resumes from")
    return output
