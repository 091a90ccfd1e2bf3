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
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from inboxcheck._batch import BatchSummary, read_batch, run_batch
from inboxcheck._errors import InboxcheckError
from inboxcheck._models import Account, Finding, Verdict
from inboxcheck._options import CheckOptions
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.connect import choose_daily_limit
from inboxcheck.platform.key import BULK_MAX_ITEMS
from inboxcheck.platform.outcomes import ApiOutcome

__all__ = ["ConnectBatchSummary", "CreateLine", "connect_batch"]

_PASSING: Final = {Verdict.PASS.value, Verdict.WARN.value}


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


def _output_state(
    path: Path, completed: dict[int, dict[str, Any]] | None = None
) -> tuple[dict[int, str], set[int], dict[int, int]]:
    """Each line's check verdict, the lines already answered by the platform, and each line's
    recommended daily limit (from its report). ``completed`` receives the account each report
    checked, for lines whose payload discovery completed."""
    verdicts: dict[int, str] = {}
    answered: set[int] = set()
    recommended: dict[int, int] = {}
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            record = json.loads(raw)
            if record.get("kind") == "create":
                answered.add(int(record["line"]))
            else:
                number = int(record["line"])
                verdicts[number] = str(record.get("verdict"))
                report = record.get("report") or {}
                value = (report.get("recommended_daily_limit") or {}).get("value")
                if isinstance(value, int):
                    recommended[number] = value
                checks = report.get("checks") or []
                if completed is not None and any(c.get("name") == "account.discovered" for c in checks):
                    completed[number] = report.get("account") or {}
    return verdicts, answered, recommended


def _gate_passes(verdict: str, *, strict: bool) -> bool:
    return verdict == Verdict.PASS.value or (verdict == Verdict.WARN.value and not strict)


def _append(path: Path, record: BaseModel) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (record.model_dump_json() + "\n").encode())
    finally:
        os.close(fd)


def _to_create(
    path: Path,
    verdicts: dict[int, str],
    answered: set[int],
    *,
    strict: bool,
    env: dict[str, str] | None,
    completed: dict[int, dict[str, Any]],
) -> Iterator[tuple[int, Account]]:
    from inboxcheck._errors import AccountError
    from inboxcheck._input import parse_account

    for item in read_batch(path, env=env):
        verdict = verdicts.get(item.line)
        account = item.account
        if item.partial is not None and item.line in completed:
            # Exactly the account that was checked: the report's fields, the line's passwords.
            fields = {k: v for k, v in completed[item.line].items() if v is not None}
            passwords = {k: v for k, v in item.partial.items() if k.endswith("_password")}
            try:
                account = parse_account(
                    {**fields, **passwords}, source=f"line {item.line}", env=env if env is not None else None
                )
            except AccountError:
                continue
        if account is None or verdict is None or item.line in answered:
            continue
        if _gate_passes(verdict, strict=strict):
            yield item.line, account


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
    """Check every account of ``path`` into ``output``, then create those that passed."""
    from inboxcheck._limits import recommend_daily_limit

    checked = await run_batch(
        path,
        options=options,
        output=output,
        resume=resume,
        concurrency=concurrency,
        per_host=per_host,
        env=env,
        **batch_options,
    )
    summary = ConnectBatchSummary(check=checked)
    completed: dict[int, dict[str, Any]] = {}
    verdicts, answered, recommended = _output_state(output, completed)
    summary.blocked = sum(1 for v in verdicts.values() if not _gate_passes(v, strict=strict))
    url = str(client.url)

    def limit_for(line: int, account: Account) -> int:
        advice = recommended.get(line) or recommend_daily_limit(stage=options.stage, preset=None).value
        return choose_daily_limit(
            account.daily_limit, advice, apply_recommended=apply_recommended_limit
        ).value

    def record(line: CreateLine) -> None:
        _append(output, line)
        summary.creates[line.outcome.value] += 1
        if on_create is not None:
            on_create(line)

    pending = list(_to_create(path, verdicts, answered, strict=strict, env=env, completed=completed))
    if bulk:
        for start in range(0, len(pending), BULK_MAX_ITEMS):
            group = pending[start : start + BULK_MAX_ITEMS]
            payloads = [account.api_payload(daily_limit=limit_for(line, account)) for line, account in group]
            key = idempotency_key(url, group[0][0], f"bulk:{len(group)}:" + group[0][1].email_address)
            outcome = await client.create_sender_accounts_bulk(payloads, idempotency_key=key)
            by_index = {item.index: item for item in outcome.items}
            for index, (line, account) in enumerate(group):
                item = by_index.get(index)
                created = outcome.outcome is ApiOutcome.CREATED and item is not None and item.created
                record(
                    CreateLine(
                        line=line,
                        email_address=account.email_address,
                        outcome=ApiOutcome.CREATED
                        if created
                        else (
                            ApiOutcome.REJECTED if outcome.outcome is ApiOutcome.CREATED else outcome.outcome
                        ),
                        inbox_id=item.inbox_id if item else None,
                        daily_limit=payloads[index]["daily_limit"],
                        idempotency_key=key,
                        finding=None if created else outcome.finding,
                    )
                )
        return summary
    for line, account in pending:
        limit = limit_for(line, account)
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
    return summary


def require_output(output: Path | None) -> Path:
    if output is None:
        raise InboxcheckError("connect --batch needs --output: it is the log the run resumes from")
    return output
