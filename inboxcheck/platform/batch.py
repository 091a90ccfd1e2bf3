"""``connect --batch``: check every account of a file, then create on the platform those that passed.

Two phases, both resumable from the output file alone:

1. the batch check (:func:`run_batch`), which appends one ``check`` line per account, naming the
   exact account it judged by its digest (a keyed HMAC of the payload, passwords included);
2. the creates: every account whose check line (matched by digest, never by line number alone)
   passes the gate and has no create yet is created, one by one or through the bulk endpoint (at
   most 100 a call).

**At most once.** The platform does not document ``Idempotency-Key``, so it cannot be what
prevents doubles. Each create is written ahead: a ``create`` line with ``state: sent``, the
attempt's key and the time is on disk before the request leaves, and a line with the outcome
follows its answer. On a resume:

- a create whose outcome is unknown (sent with no answer logged, the run killed; a timeout or a
  dropped connection; a 5xx; an answer outside the contract; a damaged create line) is **not** sent
  again: it is reported as ``create.outcome_unknown`` with when it was sent and what to look for on
  the platform, and the exit status says so. ``retry_unknown`` (``--retry-unknown``) sends it again
  with the same key;
- a create the platform provably did not act on (429, the platform unreachable, the key refused)
  is pending: a resume sends it again, and the run's exit status is not 0 while one is left;
- an account created, or refused for its data (400/422, 409), is never sent again.

A damaged log line that names no account but may have been a create holds back every create not
already answered, until the user says so (``retry_unknown``).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from inboxcheck._batch import (
    LoggedCreate,
    LoggedReport,
    digested,
    parse_logged,
    read_batch,
    run_batch,
)
from inboxcheck._batch_results import BatchSummary, LogHeader, SendTestLine
from inboxcheck._errors import InboxcheckError
from inboxcheck._jsonl import ResultLog
from inboxcheck._models import Account, Finding, Severity, Status, finding
from inboxcheck._options import CheckOptions
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.gate import DailyLimitChoice, decide
from inboxcheck.platform.key import BULK_MAX_ITEMS
from inboxcheck.platform.outcomes import ApiOutcome

__all__ = ["ConnectBatchSummary", "CreateLine", "connect_batch"]


class CreateLine(BaseModel):
    """One create call for one account, as appended to the output: ``sent`` before the request
    leaves, ``answered`` with its outcome after."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["create"] = "create"
    digest: str | None = None
    state: Literal["sent", "answered"] = "answered"
    line: int
    email_address: str
    outcome: ApiOutcome | None = None
    inbox_id: str | None = None
    status: str | None = None
    daily_limit: int
    idempotency_key: str
    sent_at: datetime | None = None
    finding: Finding | None = None


_FINAL: Final = frozenset({ApiOutcome.CREATED, ApiOutcome.REJECTED, ApiOutcome.DUPLICATE})
_PENDING: Final = frozenset({ApiOutcome.RATE_LIMITED, ApiOutcome.UNREACHABLE, ApiOutcome.KEY_REJECTED})
CREATE_UNKNOWN: Final = "create.outcome_unknown"


@dataclass
class ConnectBatchSummary:
    check: BatchSummary
    creates: Counter[str] = field(default_factory=Counter)
    blocked: int = 0
    # Creates whose outcome is unknown and that were not sent again (earlier runs' and this one's).
    unknown: list[CreateLine] = field(default_factory=list)
    # Accounts that passed and are not created yet: a resume sends them (429, unreachable, ...).
    pending: int = 0
    # Damaged log lines that may have been creates: they hold back every create not answered yet.
    held_by: list[int] = field(default_factory=list)
    # (line, earlier line) of accounts edited after their address was created from that line.
    already: list[tuple[int, int]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The check's exit code, unless a create failed, is unknown or pending: then the highest
        such exit code (8 for an unknown outcome)."""
        codes = [ApiOutcome(o).exit_code for o in self.creates if o != ApiOutcome.CREATED.value]
        if self.unknown or self.held_by:
            codes.append(ApiOutcome.OUTCOME_UNKNOWN.exit_code)
        if self.pending and not codes:
            codes.append(ApiOutcome.UNREACHABLE.exit_code)
        if self.already:
            codes.append(ApiOutcome.DUPLICATE.exit_code)
        return max(codes) if codes else self.check.exit_code

    def describe(self) -> str:
        created = self.creates.get(ApiOutcome.CREATED.value, 0)
        others = ", ".join(f"{n} {o}" for o, n in sorted(self.creates.items()) if o != "created")
        lines = [
            self.check.describe(),
            f"created {created} inbox(es) on the platform"
            + (f"; {others}" if others else "")
            + (f"; {self.blocked} blocked by their checks" if self.blocked else ""),
        ]
        if self.pending:
            lines.append(
                f"{self.pending} account(s) passed and are not created yet (pending): run again "
                "with --resume to send them"
            )
        if self.unknown:
            shown = ", ".join(str(u.line) for u in self.unknown[:10])
            more = "" if len(self.unknown) <= 10 else f" and {len(self.unknown) - 10} more"
            lines.append(
                f"{len(self.unknown)} create(s) with an unknown outcome were not sent again (line(s) "
                f"{shown}{more}): look for them in the platform's sender-account list; "
                "--retry-unknown sends those not there again, with the same key"
            )
        if self.already:
            shown = ", ".join(f"line {line} (created from line {first})" for line, first in self.already[:10])
            lines.append(
                f"{len(self.already)} account(s) were edited after their address was created, and were "
                f"not created again: {shown}; change them on the platform instead"
            )
        if self.held_by:
            shown = ", ".join(map(str, self.held_by[:10]))
            lines.append(
                f"the log's line(s) {shown} could not be read and may have recorded a create: no "
                "create was sent; look at the platform's sender-account list, then run again with "
                "--retry-unknown"
            )
        return "\n".join(lines)


def idempotency_key(url: str, digest: str) -> str:
    """The same key for the same account (its digest) on every attempt and every resume."""
    hashed = hashlib.sha256(f"{url}\n{digest}".encode()).digest()
    return str(uuid.UUID(bytes=hashed[:16], version=4))


def _bulk_key(url: str, digests: list[str]) -> str:
    return idempotency_key(url, "bulk:" + ",".join(digests))


@dataclass
class _Logged:
    """What the log says of one account (by digest): its check (the parts a gate reads) and its
    create: None (never sent), ``final``, ``pending`` or ``unknown``, with the last attempt."""

    report: LoggedReport | None = None
    create: Literal["final", "pending", "unknown"] | None = None
    attempt: CreateLine | None = None


@dataclass
class _LogRead:
    key: bytes
    accounts: dict[str, _Logged] = field(default_factory=dict)
    # Creates of an older log (or one whose header was lost), bound to their line number.
    by_line: dict[int, _Logged] = field(default_factory=dict)
    held_by: list[int] = field(default_factory=list)
    # Addresses created (or maybe created) by a logged create: (line, digest) of that create.
    addresses: dict[str, tuple[int, str | None]] = field(default_factory=dict)


_DIGEST: Final = re.compile(rb'"digest":"([0-9a-f]{64})"')
_LINE: Final = re.compile(rb'"line":([0-9]{1,12})[,}]')
_KEY: Final = re.compile(rb'"idempotency_key":"([0-9a-f-]{36})"')
_ADDRESS: Final = re.compile(rb'"email_address":"([^"\\]{1,255})"')


def _create_state(outcome: str | None) -> Literal["final", "pending", "unknown"]:
    try:
        value = ApiOutcome(outcome) if outcome is not None else None
    except ValueError:
        return "unknown"
    if value in _FINAL:
        return "final"
    return "pending" if value in _PENDING else "unknown"


def _read_log(log: ResultLog) -> _LogRead:
    header: LogHeader | None = None
    accounts: dict[str, _Logged] = {}
    by_line: dict[int, _Logged] = {}
    held_by: list[int] = []
    addresses: dict[str, tuple[int, str | None]] = {}
    for line, entry in log.entries(parse_logged):
        if entry is None:
            data = line.data
            # A damaged line: a check line is only checked again; one that may have been a create
            # is an unknown outcome for the account it names, or holds back all creates if none.
            is_create = data is not None and b'"kind":"create"' in data
            others = (b'"verdict":', b'"digest_key"', b'"kind":"send_test"')
            if data is None or (not is_create and any(other in data for other in others)):
                continue
            named = _DIGEST.search(data)
            if named is None or header is None:
                held_by.append(line.number)
            else:
                # What is left of the line still says which key and address it was sent with.
                digest = named.group(1).decode()
                key, named_address = _KEY.search(data), _ADDRESS.search(data)
                number = _LINE.search(data)
                email = named_address.group(1).decode("utf-8", "replace") if named_address else ""
                state = accounts.setdefault(digest, _Logged())
                state.create = "unknown"
                state.attempt = CreateLine(
                    digest=digest,
                    state="sent",
                    line=int(number.group(1)) if number else 0,
                    email_address=email,
                    daily_limit=1,
                    idempotency_key=key.group(1).decode() if key else "",
                )
                if email:
                    addresses[email.lower()] = (state.attempt.line, digest)
            continue
        if isinstance(entry, LogHeader):
            header = header or entry
            continue
        if isinstance(entry, SendTestLine):
            continue  # the check's own business (run_batch's): no create
        if isinstance(entry, LoggedCreate):
            if entry.digest is not None and header is not None:
                state = accounts.setdefault(entry.digest, _Logged())
            else:
                state = by_line.setdefault(entry.line, _Logged())
            state.create = "unknown" if entry.state == "sent" else _create_state(entry.outcome)
            address = (entry.email_address or "").lower()
            if state.create == "unknown" or entry.outcome == ApiOutcome.CREATED.value:
                addresses[address] = (entry.line, entry.digest)
            elif addresses.get(address, (0, None))[1] == entry.digest:
                del addresses[address]
            state.attempt = CreateLine(
                digest=entry.digest,
                state=entry.state,
                line=entry.line,
                email_address=entry.email_address or "",
                daily_limit=1,
                idempotency_key=entry.idempotency_key or "",
                sent_at=entry.sent_at,
            )
            continue
        if entry.digest is None or header is None or entry.verdict == "duplicate":
            continue
        report = entry.report
        if report is not None:
            # Passed and skipped checks never block: dropping them keeps a large log's state small,
            # and so does dropping the account, unless discovery completed it (then it is created).
            kept = tuple(c for c in report.checks if c.status not in (Status.PASS, Status.SKIPPED))
            account = report.account if report.discovered else None
            report = report.model_copy(update={"checks": kept, "account": account})
        accounts.setdefault(entry.digest, _Logged()).report = report
    if header is None:
        raise InboxcheckError(f"{log.path}: the results log has no header (its first line)")
    return _LogRead(header.key, accounts, by_line, held_by, addresses)


@dataclass(frozen=True)
class _Send:
    """One account to create: where it is, what is sent, and the key of its attempt."""

    line: int
    digest: str
    account: Account
    limit: DailyLimitChoice
    key: str | None
    again: bool  # an unknown outcome sent again (--retry-unknown)


def _gated(
    path: Path,
    read: _LogRead,
    summary: ConnectBatchSummary,
    *,
    strict: bool,
    apply_recommended_limit: bool,
    retry_unknown: bool,
    env: dict[str, str] | None,
) -> Iterator[_Send]:
    """Each account of the file to send now; the others are counted into ``summary``."""
    for item, first in digested(read_batch(path, env=env), read.key):
        if first is not None:
            continue  # the same account as an earlier line: that line is the one created
        state = read.accounts.get(item.digest)
        legacy = read.by_line.get(item.line)
        if legacy is not None and legacy.create is not None and (state is None or state.create is None):
            # An older log's create for this line: never sent again, whatever the line holds now.
            report = state.report if state else None
            state = _Logged(report=report, create=legacy.create, attempt=legacy.attempt)
        if state is None:
            continue
        if state.create == "final":
            continue
        if state.create == "unknown" and not retry_unknown:
            summary.unknown.append(_unknown(item.line, item.email or "", state.attempt))
            continue
        account = item.account
        report = state.report
        if item.partial is not None and report is not None and report.account is not None:
            account = _completed(item.line, item.partial, report.account, env)
        if account is None or report is None:
            summary.blocked += 1
            continue
        gate = decide(account, report, strict=strict, apply_recommended=apply_recommended_limit)
        if not gate.passed:
            summary.blocked += 1
            continue
        if read.held_by and not retry_unknown:
            summary.pending += 1
            continue
        earlier = read.addresses.get(account.email_address.lower())
        if earlier is not None and earlier[1] != item.digest:
            # The line was edited after its address was created (or may have been): a second
            # create of the address is a second inbox, or a 409 at best. Change it on the platform.
            summary.already.append((item.line, earlier[0]))
            continue
        key = state.attempt.idempotency_key if state.attempt is not None else None
        yield _Send(item.line, item.digest, account, gate.daily_limit, key or None, state.create == "unknown")


def _unknown(line: int, email: str, attempt: CreateLine | None) -> CreateLine:
    key = attempt.idempotency_key if attempt is not None else ""
    sent_at = attempt.sent_at if attempt is not None else None
    when = f"at {sent_at.isoformat(timespec='seconds')}" if sent_at else "by an earlier run"
    return CreateLine(
        state="sent",
        line=line,
        email_address=email,
        outcome=ApiOutcome.OUTCOME_UNKNOWN,
        daily_limit=attempt.daily_limit if attempt is not None else 1,
        idempotency_key=key,
        sent_at=sent_at,
        finding=finding(
            CREATE_UNKNOWN,
            Severity.ERROR,
            f"The create of {email} was sent {when} and no answer was recorded: the inbox may "
            "exist on the platform. It was not sent again, so that it cannot be created twice.",
            fix=f"Look for {email} in the platform's sender-account list. If it is there, nothing "
            "is left to do; if not, run again with --resume --retry-unknown, which sends it again "
            f"with the same Idempotency-Key ({key or 'not readable in the damaged log line'}).",
            line=line,
            idempotency_key=key,
            sent_at=sent_at.isoformat() if sent_at else None,
        ),
    )


def _completed(
    line: int, partial: dict[str, Any], checked: dict[str, Any], env: dict[str, str] | None
) -> Account | None:
    """The account discovery completed and the checks passed: the logged fields, the line's passwords."""
    from inboxcheck._errors import AccountError
    from inboxcheck._input import parse_account

    fields = {key: value for key, value in checked.items() if value is not None}
    passwords = {key: value for key, value in partial.items() if key.endswith("_password")}
    try:
        return parse_account({**fields, **passwords}, source=f"line {line}", env=env)
    except AccountError:
        return None


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
    retry_unknown: bool = False,
    concurrency: int = 20,
    per_host: int = 4,
    env: dict[str, str] | None = None,
    on_create: Callable[[CreateLine], None] | None = None,
    on_sent: Callable[[CreateLine], None] | None = None,
    **batch_options: Any,
) -> ConnectBatchSummary:
    """Check every account of ``path`` into ``output``, then create those that passed.

    ``output`` is locked from the first check to the last create: a second run on it refuses. A
    create whose outcome is unknown is sent again only with ``retry_unknown``; ``on_create`` is
    told of each answer, and of each unknown outcome left as it is; ``on_sent`` of each create
    about to leave (its ``sent`` line is on disk).
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
        read = _read_log(log)
        summary.held_by = [] if retry_unknown else read.held_by
        pending = list(
            _gated(
                path,
                read,
                summary,
                strict=strict,
                apply_recommended_limit=apply_recommended_limit,
                retry_unknown=retry_unknown,
                env=env,
            )
        )
        if on_create is not None:
            for unknown in summary.unknown:
                on_create(unknown)

        def write(line: CreateLine) -> None:
            # A create is not undone by a crash: its line must survive one too, and the line saying
            # it was sent must be on disk before the request leaves.
            log.append((line.model_dump_json() + "\n").encode(), durable=True)
            if line.state == "sent" and on_sent is not None:
                on_sent(line)

        def record(line: CreateLine) -> None:
            write(line)
            assert line.outcome is not None
            summary.creates[line.outcome.value] += 1
            if line.outcome in _PENDING:
                summary.pending += 1
            if on_create is not None:
                on_create(line)

        create = _create_bulk if bulk else _create_each
        left = await create(pending, client=client, write=write, record=record)
        summary.pending += left
        return summary


Write = Callable[[CreateLine], None]


def _now() -> datetime:
    return datetime.now(UTC)


async def _create_bulk(pending: list[_Send], *, client: PlatformClient, write: Write, record: Write) -> int:
    url = str(client.url)
    # An unknown bulk call sent again goes with the accounts and the key it had; new ones in groups.
    groups: dict[str | None, list[_Send]] = {}
    for send in pending:
        groups.setdefault(send.key if send.again else None, []).append(send)
    calls: list[tuple[str | None, list[_Send]]] = []
    for key, members in groups.items():
        for start in range(0, len(members), BULK_MAX_ITEMS):
            calls.append((key, members[start : start + BULK_MAX_ITEMS]))
    for number, (given, group) in enumerate(calls):
        payloads = [send.account.api_payload(daily_limit=send.limit.value) for send in group]
        key = given or _bulk_key(url, [send.digest for send in group])
        sent_at = _now()
        for send, payload in zip(group, payloads, strict=True):
            write(_line(send, "sent", key, sent_at, payload["daily_limit"]))
        outcome = await client.create_sender_accounts_bulk(payloads, idempotency_key=key)
        by_index = {item.index: item for item in outcome.items}
        for index, send in enumerate(group):
            item = by_index.get(index)
            created = outcome.outcome is ApiOutcome.CREATED and item is not None and item.created
            # A bulk call that went through but not for this item: the platform refused that item.
            refused = ApiOutcome.REJECTED if outcome.outcome is ApiOutcome.CREATED else outcome.outcome
            record(
                _line(
                    send,
                    "answered",
                    key,
                    sent_at,
                    payloads[index]["daily_limit"],
                    outcome=ApiOutcome.CREATED if created else refused,
                    inbox_id=item.inbox_id if item else None,
                    finding=None if created else outcome.finding,
                )
            )
        if outcome.outcome in (ApiOutcome.KEY_REJECTED, ApiOutcome.OUTCOME_UNKNOWN):
            return sum(len(g) for _, g in calls[number + 1 :])
    return 0


def _line(
    send: _Send,
    state: Literal["sent", "answered"],
    key: str,
    sent_at: datetime,
    limit: int,
    **answer: Any,
) -> CreateLine:
    return CreateLine(
        digest=send.digest,
        state=state,
        line=send.line,
        email_address=send.account.email_address,
        daily_limit=limit,
        idempotency_key=key,
        sent_at=sent_at,
        **answer,
    )


async def _create_each(pending: list[_Send], *, client: PlatformClient, write: Write, record: Write) -> int:
    url = str(client.url)
    for number, send in enumerate(pending):
        limit = send.limit.value
        key = send.key or idempotency_key(url, send.digest)
        sent_at = _now()
        write(_line(send, "sent", key, sent_at, limit))
        created_outcome = await client.create_sender_account(
            send.account.api_payload(daily_limit=limit), idempotency_key=key
        )
        inbox = created_outcome.inbox
        record(
            _line(
                send,
                "answered",
                key,
                sent_at,
                limit,
                outcome=created_outcome.outcome,
                inbox_id=inbox.id if inbox else None,
                status=inbox.status.value if inbox else None,
                finding=None if created_outcome.ok else created_outcome.finding,
            )
        )
        if created_outcome.outcome in (ApiOutcome.KEY_REJECTED, ApiOutcome.OUTCOME_UNKNOWN):
            # The key is wrong for every account, or the platform is in a state a person must look
            # at: stop rather than repeat the same failure for the rest of the file.
            return len(pending) - number - 1
    return 0


def require_output(output: Path | None) -> Path:
    if output is None:
        raise InboxcheckError("connect --batch needs --output: it is the log the run resumes from")
    return output
