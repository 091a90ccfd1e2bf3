"""Checking many accounts: JSONL or CSV in, one JSON line out per account the moment it finishes.

- Bounded concurrency overall, and a bound per server host, so a batch never opens hundreds of
  logins at once against one provider.
- One check at a time per mailbox (same username on the same host): servers cap a mailbox's
  concurrent connections (Dovecot's ``mail_max_userip_connections``, Gmail's ~15), and a batch that
  listed one mailbox twice must not trip the limit it would then report.
- The input is read lazily and results are written as they come, so memory stays flat however long
  the file is.
- The output is the resume log (:class:`inboxcheck._jsonl.ResultLog`, locked for the whole run): a
  run killed at any moment and restarted with ``resume=True`` skips the accounts already written (a
  torn last line is cut off first, a damaged line is skipped and reported) and loses none.
- Each record names the exact account it judged by its digest (:func:`item_digest`, keyed with the
  random key in the log's header): a resume matches by digest, never by line number alone, so a
  line edited since its check is checked again; the same account on two lines is checked once.
- A bad line becomes a result with its line number; the rest goes on. Lines are read with a bound.
- DNS lookups are shared across the batch (many accounts share a domain), within a bounded cache;
  per-host bounds exist only for the hosts in use. Both keep memory flat however many domains and
  hosts the file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import io
import json
import logging
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, TypeAdapter, model_validator

from inboxcheck._batch_results import (
    BatchLine,
    BatchSummary,
    BatchSummaryDocument,
    FieldIssue,
    Hex64,
    LogHeader,
)
from inboxcheck._check import CheckSpec
from inboxcheck._errors import AccountError, InboxcheckError, ResultsLogError
from inboxcheck._input import FIELD_RULES, decode_json, long_integer_or_int, parse_account
from inboxcheck._jsonl import Line, ResultLog, read_lines
from inboxcheck._models import Account, CheckResult, Status, Verdict
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets

__all__ = [
    "BatchItem",
    "BatchLine",
    "BatchSummary",
    "BatchSummaryDocument",
    "FieldIssue",
    "read_batch",
    "run_batch",
]

MAX_LINE_BYTES: Final = 1_000_000
# Lookups a batch remembers, least recently used dropped first: 2,000-2,500 domains' worth of MX, SPF,
# DMARC and DKIM answers, about 12 MB. Accounts of one domain share them within that window; provider
# hosts that every account asks for stay at the recent end.
BATCH_DNS_ENTRIES: Final = 10_000
# Descriptors one account may hold at once: the SMTP and IMAP connections, and a second connection
# each (the TLS-mode probe, the certificate inspection). DNS has its own bound (MAX_IN_FLIGHT).
_FILES_PER_ACCOUNT: Final = 4
# Kept for everything else: the results log, the CA store being read, the event loop, stdio.
_FILES_RESERVED: Final = 32
_log = logging.getLogger("inboxcheck.batch")


def descriptor_bound(concurrency: int) -> int:
    """``concurrency``, lowered to what this process may have open at once (RLIMIT_NOFILE): past it,
    connections fail with "too many open files", which is no fault of the accounts. Said once, as a
    warning on the ``inboxcheck.batch`` logger (stderr, unless the caller routes it)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return concurrency
    if soft == resource.RLIM_INFINITY:
        return concurrency
    from inboxcheck.dns.client import MAX_IN_FLIGHT

    try:
        open_now = sum(1 for _ in Path("/dev/fd").iterdir())
    except OSError:
        open_now = _FILES_RESERVED
    bound = max(1, (soft - open_now - MAX_IN_FLIGHT - _FILES_RESERVED) // _FILES_PER_ACCOUNT)
    if bound >= concurrency:
        return concurrency
    _log.warning(
        "inboxcheck: checking %d accounts at once, not %d: this process may open %d files (ulimit -n); "
        "raise that limit to check more at once",
        bound,
        concurrency,
        soft,
    )
    return bound


_INT_FIELDS: Final = frozenset({"smtp_port", "imap_port", "daily_limit"})
_BOOL_FIELDS: Final = frozenset({"smtp_use_tls", "imap_use_ssl"})
_TRUE: Final = frozenset({"true", "1", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off"})


@dataclass
class BatchItem:
    line: int
    account: Account | None = None
    email: str | None = None
    error: str | None = None
    problems: tuple[FieldIssue, ...] = ()
    # The line is no account at all (not JSON, not UTF-8, too long, broken CSV): a bad line, not
    # counted among the accounts.
    bad_line: bool = False
    # A partial payload (email_address and what the user knows), completed by discovery when checked.
    partial: dict[str, Any] | None = None
    digest: str = ""


_CASELESS: Final = ("email_address", "smtp_host", "imap_host", "smtp_username", "imap_username")


def _canonical(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Addresses, host names and usernames compare without case (an address typed twice with a
    different case is the same account; the platform refuses it as a duplicate either way)."""
    return {
        name: value.lower().rstrip(".") if name in _CASELESS and isinstance(value, str) else value
        for name, value in fields.items()
    }


def item_digest(key: bytes, item: BatchItem) -> str:
    """HMAC-SHA256 of the line's canonical account, passwords included: what exactly was judged.

    A full account digests its create payload (so a changed password, host or daily_limit is
    another account); a partial one its fields; an unusable line its problem."""
    if item.account is not None:
        text = "account\n" + json.dumps(
            _canonical(item.account.api_payload()), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
    elif item.partial is not None:
        text = "partial\n" + json.dumps(
            _canonical(item.partial), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
    else:
        text = f"invalid\n{item.line}\n{item.error}"
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def short(digest: str) -> bytes:
    """What a run keeps of a digest in memory: 16 bytes tell a file's accounts apart (a collision
    is a 1 in 2**64 chance at 2**32 accounts), and keep the state of a large log small."""
    return bytes.fromhex(digest[:32])


def digested(items: Iterator[BatchItem], key: bytes) -> Iterator[tuple[BatchItem, int | None]]:
    """Each item with its digest set, and the line of an earlier item holding the same account."""
    first: dict[bytes, int] = {}
    for item in items:
        item.digest = item_digest(key, item)
        line = first.setdefault(short(item.digest), item.line)
        yield item, (line if line != item.line else None)


def _detect_format(path: Path, head: str) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def _csv_value(name: str, text: str) -> object:
    """CSV cells are text; give them the JSON type the platform expects, or leave them to be refused."""
    value = text.strip()
    if name in _INT_FIELDS and value.lstrip("-").isdigit():
        return long_integer_or_int(value)
    if name in _BOOL_FIELDS and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return text


def _bad_line(number: int, problem: str) -> BatchItem:
    return BatchItem(
        number, error=problem, problems=(FieldIssue(field=None, problem=problem),), bad_line=True
    )


def _issues(error: AccountError) -> tuple[FieldIssue, ...]:
    """The account's problems, one per field, with what the platform allows there."""
    issues = []
    for item in error.problems:
        allowed = FIELD_RULES.get(item.field)
        problem = item.problem.removesuffix(f"; allowed: {allowed}") if allowed else item.problem
        issues.append(FieldIssue(field=item.field, problem=problem, allowed=allowed))
    return tuple(issues) or (FieldIssue(field=None, problem=error.message or str(error)),)


def _one_line(error: AccountError) -> str:
    """The error on one line: a log line holds no line breaks."""
    return "; ".join(line.strip() for line in str(error).splitlines())


def _parse(line: int, data: object, env: dict[str, str]) -> BatchItem:
    from inboxcheck.discovery.complete import is_partial

    email = data.get("email_address") if isinstance(data, dict) else None
    if is_partial(data):
        assert isinstance(data, dict) and isinstance(email, str)
        return BatchItem(line, email=email, partial=dict(data))
    try:
        account = parse_account(data, source=f"line {line}", env=env)
    except AccountError as exc:
        return BatchItem(
            line, email=email if isinstance(email, str) else None, error=_one_line(exc), problems=_issues(exc)
        )
    return BatchItem(line, account=account, email=account.email_address)


def read_batch(path: Path, *, env: dict[str, str] | None = None) -> Iterator[BatchItem]:
    """Yield each account of a JSONL or CSV file lazily, with its line number, or the line's problem.

    Lines are read with a bound (:data:`MAX_LINE_BYTES`): a longer one is that line's problem, and is
    never held whole.
    """
    env = env if env is not None else dict(os.environ)
    try:
        # `-` is standard input, read as it comes (a pipe cannot be counted or rewound).
        handle = (
            io.BufferedReader(cast("io.RawIOBase", sys.stdin.buffer)) if path == STDIN else path.open("rb")
        )
    except OSError as exc:
        raise InboxcheckError(f"{path}: cannot read the batch file: {exc.strerror or exc}") from None
    with handle:
        head = handle.peek(4096)[:4096].decode("utf-8", errors="replace").removeprefix("\ufeff")
        lines = read_lines(handle, limit=MAX_LINE_BYTES)
        if _detect_format(path, head) == "jsonl":
            yield from _read_jsonl(lines, env)
        else:
            yield from _read_csv(lines, env)


def _text(line: Line) -> tuple[str, str | None]:
    """The line's text, or why it has none."""
    if line.data is None:
        return "", f"line {line.number}: longer than {MAX_LINE_BYTES:,} bytes"
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"line {line.number}: not UTF-8 text (bad byte at column {exc.start + 1})"
    return (text.removeprefix("\ufeff") if line.number == 1 else text), None


def _read_jsonl(lines: Iterator[Line], env: dict[str, str]) -> Iterator[BatchItem]:
    for line in lines:
        number = line.number
        text, problem = _text(line)
        if problem is not None:
            yield _bad_line(number, problem)
            continue
        if not text.strip():
            continue
        try:
            data = decode_json(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield _bad_line(number, f"line {number}: not valid JSON: {reason}")
            continue
        yield _parse(number, data, env)


def _read_csv(lines: Iterator[Line], env: dict[str, str]) -> Iterator[BatchItem]:
    # The csv module reads text lines; a line that has none (too long, not UTF-8) reaches it as an
    # empty line, which keeps its numbering, and comes out here as that line's problem.
    problems: dict[int, str] = {}

    def texts() -> Iterator[str]:
        for line in lines:
            text, problem = _text(line)
            if problem is not None:
                problems[line.number] = problem
                text = "\n"
            yield text

    def pending(upto: int | None) -> Iterator[BatchItem]:
        for number in sorted(n for n in problems if upto is None or n <= upto):
            yield _bad_line(number, problems.pop(number))

    reader = csv.reader(texts())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InboxcheckError(f"the CSV header cannot be read: {exc}") from None
    if problems:
        raise InboxcheckError(f"the CSV header cannot be read: {problems.popitem()[1]}")
    names = [name.strip() for name in header]
    unknown = [name for name in names if name and name not in FIELD_RULES]
    if unknown:
        raise InboxcheckError(
            f"the CSV header has columns that are not account fields: {', '.join(unknown)}; "
            f"expected the platform's field names ({', '.join(FIELD_RULES)})"
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            yield from pending(None)
            return
        except csv.Error as exc:
            yield from pending(reader.line_num)
            yield _bad_line(reader.line_num, f"line {reader.line_num}: not valid CSV: {exc}")
            continue
        yield from pending(reader.line_num)
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) != len(names):
            yield _bad_line(number, f"line {number}: {len(row)} columns, the header has {len(names)}")
            continue
        data = {name: _csv_value(name, cell) for name, cell in zip(names, row, strict=True) if cell != ""}
        yield _parse(number, data, env)


class _LoggedCheckResult(BaseModel):
    name: str
    status: Status


class _LoggedLimit(BaseModel):
    value: int


class LoggedReport(BaseModel):
    """The parts of a logged report that the gate reads (and, for a line whose partial payload
    discovery completed, the account that was checked: ``connect --batch`` creates exactly that)."""

    checks: tuple[_LoggedCheckResult, ...]
    recommended_daily_limit: _LoggedLimit
    account: dict[str, Any] | None = None

    @property
    def discovered(self) -> bool:
        return any(check.name == "account.discovered" for check in self.checks)


class LoggedCheck(BaseModel):
    """What a resume reads back of a check line: enough to skip it, gate it and limit it, no more
    (a whole report per line would make a resume of a large log slow)."""

    model_config = ConfigDict(frozen=True)

    line: int
    digest: Hex64 | None = None
    verdict: Verdict | Literal["invalid", "duplicate"]
    duplicate_of: int | None = None
    report: LoggedReport | None = None

    @model_validator(mode="after")
    def _checked_lines_have_a_report(self) -> LoggedCheck:
        if self.verdict not in ("invalid", "duplicate") and self.report is None:
            raise ValueError("a checked account's line has no report")
        return self


class LoggedCreate(BaseModel):
    """What a resume reads back of a ``create`` line (written by ``connect --batch``).

    ``state`` ``sent`` is written (and on disk) before the request leaves; ``answered`` after, with
    the outcome. A line of an older inboxcheck has neither ``digest`` nor ``state``: it was answered.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["create"]
    line: int
    digest: Hex64 | None = None
    state: Literal["sent", "answered"] = "answered"
    email_address: str | None = None
    outcome: str | None = None
    idempotency_key: str | None = None
    sent_at: datetime | None = None


_LOGGED: Final = TypeAdapter(LogHeader | LoggedCreate | LoggedCheck)


def parse_logged(raw: bytes) -> LogHeader | LoggedCreate | LoggedCheck:
    """One line of a results log; raises ValueError for a line that is not one inboxcheck wrote."""
    return _LOGGED.validate_json(raw)


@dataclass
class LogState:
    """What a results log holds, by account digest: the key, the checks, and the duplicates logged.

    ``legacy`` counts check lines with no digest the key can vouch for (a log of an older
    inboxcheck, or one whose header was lost): their accounts are checked again. ``key_lost``: the
    log holds digests but no readable header (their key is gone)."""

    header: LogHeader | None = None
    # By :func:`short` digest.
    checks: dict[bytes, str] = field(default_factory=dict)
    duplicates: set[tuple[int, bytes]] = field(default_factory=set)
    legacy: int = 0
    key_lost: bool = False

    @property
    def key(self) -> bytes:
        assert self.header is not None
        return self.header.key

    def describe_legacy(self) -> str | None:
        if not self.legacy:
            return None
        why = (
            "its header, which holds the key of its account digests, could not be read"
            if self.key_lost
            else "it was written by an older inboxcheck, with no account digests"
        )
        return (
            f"the output file's {self.legacy} earlier result(s) cannot be matched to the accounts "
            f"now in the input ({why}): those accounts are checked again"
        )

    def add(self, record: LogHeader | LoggedCreate | LoggedCheck) -> None:
        """Take in the log's next record."""
        if isinstance(record, LogHeader):
            self.header = self.header or record
            return
        if record.digest is not None and self.header is None:
            self.key_lost = True
        if isinstance(record, LoggedCreate):
            return
        if record.digest is None or self.header is None:
            self.legacy += record.verdict != "duplicate"
        elif record.verdict == "duplicate":
            self.duplicates.add((record.line, short(record.digest)))
        else:
            self.checks[short(record.digest)] = str(record.verdict)


def read_state(records: Iterator[LogHeader | LoggedCreate | LoggedCheck]) -> LogState:
    """What the log's records say, by digest (see :class:`LogState`)."""
    state = LogState()
    for record in records:
        state.add(record)
    return state


class _Output:
    """Where results go: the results log (when given) and a stream (JSON on stdout without a log)."""

    def __init__(self, log: ResultLog | None, stream: IO[str] | None) -> None:
        self.log = log
        self.stream = stream

    def done(self, *, resume: bool, retry_errors: bool) -> LogState:
        """Refuse to add to earlier results unless resuming them; return what is already done.

        With ``retry_errors``, the results that could not tell are dropped from the log (rewritten)
        so that they are checked again. ``create`` lines are not check results, but are kept. A log
        with no header (a new one, or one of an older inboxcheck) gets one.
        """
        if self.log is None:
            return LogState(LogHeader.new())
        if not resume and not self.log.is_empty():
            raise ResultsLogError(
                f"{self.log.path} already holds results; pass --resume to continue that run, "
                "or choose another file"
            )
        state = LogState()

        def keep(record: LogHeader | LoggedCreate | LoggedCheck) -> bool:
            if isinstance(record, LoggedCheck) and record.verdict == Verdict.ERROR.value:
                return False
            state.add(record)
            return True

        if retry_errors:
            self.log.rewrite(parse_logged, keep)
        else:
            state = read_state(self.log.records(parse_logged))
        if state.header is None:
            state.header = LogHeader.new()
            self.log.append((state.header.model_dump_json() + "\n").encode(), durable=True)
        return state

    def write(self, record: BatchLine) -> None:
        data = (record.model_dump_json() + "\n").encode()
        if self.log is not None:
            self.log.append(data)
        if self.stream is not None:
            self.stream.write(data.decode())
            self.stream.flush()


class _Slot:
    __slots__ = ("semaphore", "users")

    def __init__(self, per_host: int) -> None:
        self.semaphore = asyncio.Semaphore(per_host)
        self.users = 0  # accounts holding or waiting for the semaphore


class _HostBounds:
    """At most ``per_host`` accounts at once against each server host.

    A host's semaphore exists only while an account holds or awaits it: a batch over a hundred
    thousand distinct hosts would otherwise keep a hundred thousand semaphores to its end.
    """

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._slots: dict[str, _Slot] = {}

    @contextlib.asynccontextmanager
    async def hold(self, hosts: set[str]) -> AsyncIterator[None]:
        # Always taken in the same (sorted) order, so two accounts sharing two hosts cannot deadlock.
        slots = []
        for host in sorted(hosts):
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = _Slot(self.per_host)
            slot.users += 1
            slots.append((host, slot))
        try:
            async with AsyncExitStack() as stack:
                for _, slot in slots:
                    await stack.enter_async_context(slot.semaphore)
                yield
        finally:
            for host, slot in slots:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[host]


ResultCallback = Callable[[BatchLine], None]
_T = TypeVar("_T")
# Called with each checked account's line before it counts as done (the fleet records it in its store).
RecordCallback = Callable[[BatchLine], Awaitable[None]]
STDIN: Final = Path("-")


def count_accounts(path: Path) -> int | None:
    """How many accounts ``path`` holds (its non-blank lines, less a CSV header), for a progress
    display; ``None`` for standard input. Counting is a read of the file: cheap next to one login."""
    if path == STDIN:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.peek(4096)[:4096].decode("utf-8", errors="replace").removeprefix("\ufeff")
            count = sum(
                1
                for line in read_lines(handle, limit=MAX_LINE_BYTES)
                if line.data is None or line.data.strip()
            )
    except OSError:
        return None
    return max(count - (_detect_format(path, head) == "csv"), 0)


async def run_batch(
    path: Path | Iterable[BatchItem],
    *,
    options: CheckOptions,
    output: Path | ResultLog | None = None,
    stream: IO[str] | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    concurrency: int = 20,
    per_host: int = 4,
    one_per_mailbox: bool = True,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_result: ResultCallback | None = None,
    env: dict[str, str] | None = None,
    specs: Sequence[CheckSpec] | None = None,
    discovery: Mapping[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    record: RecordCallback | None = None,
    gate: Callable[[Account], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> BatchSummary:
    """Check every account in ``path``; write each result as it finishes; return the summary.

    A line with only ``email_address`` (and what the user knows) is completed by discovery first
    (``discovery`` holds its ``trust_hosts`` and ``autoconfig_port``).

    ``output`` is the results log, locked for the whole run; it may not be ``path`` itself. A
    :class:`~inboxcheck._jsonl.ResultLog` already open is used as it is (``connect --batch`` holds
    one from its first check to its last create). ``on_start`` is told how many accounts the output
    already holds (resumed), before the first check starts: a progress display counts the rest.

    ``path`` may instead be the accounts themselves (the fleet's, from its store); ``record`` is
    awaited with each checked account's line before it is counted, so a store write is part of it.
    ``gate`` (the fleet's pace per provider) is entered around each account's checks, inside its
    host bounds.
    """
    from inboxcheck._check import make_ssl_context
    from inboxcheck._runner import run_checks
    from inboxcheck.checks import registered_checks
    from inboxcheck.dns.client import DnsClient

    if concurrency < 1 or per_host < 1:
        raise InboxcheckError("--concurrency and --per-host must be at least 1")
    concurrency = descriptor_bound(concurrency)
    with _opened(output, not_same_as=path if isinstance(path, Path) else None) as log:
        # The output is small appends and one scan at the start: blocking file I/O is cheaper here
        # than a thread hop per result.
        sink = _Output(log, stream)
        state = sink.done(resume=resume, retry_errors=retry_errors)
        if on_start is not None:
            on_start(len(state.checks))
        presets = presets if presets is not None else load_presets()
        dns_client = DnsClient(
            options.nameservers, timeout=options.timeout, record=False, max_entries=BATCH_DNS_ENTRIES
        )
        tls = ssl_context or make_ssl_context(options)
        # What every account shares is made once: the registry, like the TLS context and DNS cache.
        specs = specs if specs is not None else registered_checks(options.families)
        summary = BatchSummary()
        if log is not None:
            summary.damaged_log_lines = list(log.damaged)
        summary.legacy_note = state.describe_legacy()
        host_bounds = _HostBounds(per_host)
        mailbox_bounds = _HostBounds(1)
        queue: asyncio.Queue[BatchItem | None] = asyncio.Queue(maxsize=concurrency * 2)

        def finish(record: BatchLine, *, bad_line: bool = False) -> None:
            sink.write(record)
            if not bad_line:
                summary.verdicts[str(record.verdict)] += 1
            if record.report is not None:
                summary.codes.update(f.code for f in record.report.findings() if f.severity.value != "info")
            if on_result is not None:
                on_result(record)

        async def complete(item: BatchItem) -> tuple[CheckResult, ...]:
            from inboxcheck.discovery.complete import complete_payload

            assert item.partial is not None
            try:
                completion = await complete_payload(
                    item.partial,
                    options=options,
                    source=f"line {item.line}",
                    presets=presets,
                    ssl_context=tls,
                    dns_client=dns_client,
                    **(discovery or {}),
                )
                item.account = parse_account(
                    completion.payload,
                    source=f"line {item.line}",
                    env=env if env is not None else dict(os.environ),
                )
            except AccountError as exc:
                item.error, item.problems = _one_line(exc), _issues(exc)
                return ()
            return (completion.result(),)

        async def check_one(item: BatchItem) -> None:
            leading = await complete(item) if item.partial is not None else ()
            if item.account is None:
                summary.invalid_lines.append(item.line)
                finish(
                    BatchLine(
                        line=item.line,
                        digest=item.digest,
                        email_address=item.email,
                        verdict="invalid",
                        error=item.error,
                        problems=item.problems,
                    ),
                    bad_line=item.bad_line,
                )
                return
            account = item.account
            mailboxes = (
                {
                    f"smtp {account.smtp_username.lower()} {account.smtp_host.lower()}",
                    f"imap {account.imap_username.lower()} {account.imap_host.lower()}",
                }
                if one_per_mailbox
                else set()
            )
            # The mailbox first, then the hosts: an account waiting for its mailbox holds no host
            # slot, and every account takes its locks in the same order, so none waits in a ring.
            async with (
                mailbox_bounds.hold(mailboxes),
                host_bounds.hold({account.smtp_host.lower(), account.imap_host.lower()}),
                gate(account) if gate is not None else contextlib.nullcontext(),
            ):
                report = await run_checks(
                    account,
                    options=options,
                    presets=presets,
                    ssl_context=tls,
                    dns_client=dns_client,
                    specs=specs,
                    leading=leading,
                )
            line = BatchLine(
                line=item.line,
                digest=item.digest,
                email_address=account.email_address,
                verdict=report.verdict,
                report=report,
            )
            if record is not None:
                await record(line)
            finish(line)

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                await check_one(item)

        async def produce() -> None:
            # Matched by digest, not by line: a line edited since it was checked is checked again,
            # and one that moved is not.
            items = read_batch(path, env=env) if isinstance(path, Path) else iter(path)
            async for item, first in _aiter(digested(items, state.key)):
                if first is not None:
                    summary.duplicates.append((item.line, first))
                    if (item.line, short(item.digest)) in state.duplicates:
                        summary.verdicts["duplicate"] += 1
                    else:
                        finish(
                            BatchLine(
                                line=item.line,
                                digest=item.digest,
                                email_address=item.email,
                                verdict="duplicate",
                                duplicate_of=first,
                                error=f"the same account as line {first}, checked (and created) once",
                            )
                        )
                    continue
                verdict = state.checks.get(short(item.digest))
                if verdict is not None:
                    summary.skipped_done += 1
                    summary.verdicts[verdict] += 1
                    if verdict == "invalid":
                        summary.invalid_lines.append(item.line)
                    continue
                await queue.put(item)
            for _ in range(concurrency):
                await queue.put(None)

        workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        producer = asyncio.ensure_future(produce())
        try:
            await asyncio.gather(producer, *workers)
        except BaseException:
            for task in [producer, *workers]:
                # A cancelled gather has cancelled them already: a second cancel would cut a check's
                # own clean-up short (the wait for its logins to stop) and leave them running.
                if not task.cancelling():
                    task.cancel()
            await asyncio.gather(producer, *workers, return_exceptions=True)
            raise
        return summary


@contextlib.contextmanager
def _opened(output: Path | ResultLog | None, *, not_same_as: Path | None) -> Iterator[ResultLog | None]:
    if isinstance(output, Path):
        with ResultLog.open(output, not_same_as=not_same_as) as log:
            yield log
    else:
        yield output


async def _aiter(items: Iterator[_T]) -> AsyncIterator[_T]:
    """Hand the event loop back between lines, so a huge file does not starve the workers."""
    for count, item in enumerate(items):
        yield item
        if count % 64 == 0:
            await asyncio.sleep(0)


def read_results(path: Path) -> list[dict[str, Any]]:
    """The complete, readable lines of a results file, less its header (for tests and tools)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    results = []
    for line in io.StringIO(text):
        if line.endswith("\n"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not (isinstance(record, dict) and record.get("kind") == "header"):
                    results.append(record)
    return results
