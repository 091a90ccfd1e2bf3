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
- A bad line becomes a result with its line number; the rest goes on. Lines are read with a bound.
- DNS lookups are shared across the batch (many accounts share a domain), within a bounded cache;
  per-host bounds exist only for the hosts in use. Both keep memory flat however many domains and
  hosts the file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import ssl
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, TypeAdapter, model_validator

from inboxcheck._check import CheckSpec
from inboxcheck._errors import AccountError, InboxcheckError, ResultsLogError
from inboxcheck._input import FIELD_RULES, decode_json, long_integer_or_int, parse_account
from inboxcheck._jsonl import Line, ResultLog, read_lines
from inboxcheck._models import Account, CheckResult, Report, Status, Verdict
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets

__all__ = ["BatchItem", "BatchLine", "BatchSummary", "read_batch", "run_batch"]

MAX_LINE_BYTES: Final = 1_000_000
# Lookups a batch remembers, least recently used dropped first: 2,000-2,500 domains' worth of MX, SPF,
# DMARC and DKIM answers, about 12 MB. Accounts of one domain share them within that window; provider
# hosts that every account asks for stay at the recent end.
BATCH_DNS_ENTRIES: Final = 10_000
_INT_FIELDS: Final = frozenset({"smtp_port", "imap_port", "daily_limit"})
_BOOL_FIELDS: Final = frozenset({"smtp_use_tls", "imap_use_ssl"})
_TRUE: Final = frozenset({"true", "1", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off"})


class BatchLine(BaseModel):
    """One line of the output file: an account's report, or why its input line was unusable."""

    model_config = ConfigDict(frozen=True)

    line: int
    email_address: str | None = None
    verdict: Verdict | Literal["invalid"]
    error: str | None = None
    report: Report | None = None


@dataclass
class BatchItem:
    line: int
    account: Account | None = None
    email: str | None = None
    error: str | None = None
    # A partial payload (email_address and what the user knows), completed by discovery when checked.
    partial: dict[str, Any] | None = None


@dataclass
class BatchSummary:
    """What a batch did: accounts per verdict, the most frequent finding codes, bad lines."""

    verdicts: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    skipped_done: int = 0
    invalid_lines: list[int] = field(default_factory=list)
    damaged_log_lines: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.verdicts.values())

    @property
    def exit_code(self) -> int:
        """1 if an account failed, else 2 if a line was unusable, else 3 if a check could not tell."""
        if self.verdicts.get(Verdict.FAIL.value):
            return 1
        if self.invalid_lines:
            return 2
        if self.verdicts.get(Verdict.ERROR.value):
            return 3
        return 0

    def describe(self, *, top: int = 5) -> str:
        parts = [f"{count} {verdict}" for verdict, count in sorted(self.verdicts.items())]
        lines = [f"{self.total} accounts: " + (", ".join(parts) or "none")]
        if self.skipped_done:
            lines.append(f"{self.skipped_done} of them were already in the output file (resumed)")
        if self.damaged_log_lines:
            damaged = self.damaged_log_lines
            shown = ", ".join(map(str, damaged[:10]))
            more = "" if len(damaged) <= 10 else f" and {len(damaged) - 10} more"
            lines.append(
                f"the output file's line(s) {shown}{more} could not be read and were skipped "
                "(kept as they are; the accounts they held were checked again)"
            )
        if self.invalid_lines:
            shown = ", ".join(map(str, self.invalid_lines[:10]))
            more = "" if len(self.invalid_lines) <= 10 else f" and {len(self.invalid_lines) - 10} more"
            lines.append(f"unusable input lines: {shown}{more}")
        if self.codes:
            common = ", ".join(f"{code} ({n})" for code, n in self.codes.most_common(top))
            lines.append(f"most frequent findings: {common}")
        return "\n".join(lines)


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


def _parse(line: int, data: object, env: dict[str, str]) -> BatchItem:
    from inboxcheck.discovery.complete import is_partial

    email = data.get("email_address") if isinstance(data, dict) else None
    if is_partial(data):
        assert isinstance(data, dict) and isinstance(email, str)
        return BatchItem(line, email=email, partial=dict(data))
    try:
        account = parse_account(data, source=f"line {line}", env=env)
    except AccountError as exc:
        return BatchItem(line, email=email if isinstance(email, str) else None, error=str(exc))
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
            yield BatchItem(number, error=problem)
            continue
        if not text.strip():
            continue
        try:
            data = decode_json(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield BatchItem(number, error=f"line {number}: not valid JSON: {reason}")
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
            yield BatchItem(number, error=problems.pop(number))

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
            yield BatchItem(reader.line_num, error=f"line {reader.line_num}: not valid CSV: {exc}")
            continue
        yield from pending(reader.line_num)
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) != len(names):
            yield BatchItem(number, error=f"line {number}: {len(row)} columns, the header has {len(names)}")
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
    verdict: Verdict | Literal["invalid"]
    report: LoggedReport | None = None

    @model_validator(mode="after")
    def _checked_lines_have_a_report(self) -> LoggedCheck:
        if self.verdict != "invalid" and self.report is None:
            raise ValueError("a checked account's line has no report")
        return self


class LoggedCreate(BaseModel):
    """What a resume reads back of a ``create`` line (written by ``connect --batch``)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["create"]
    line: int


_LOGGED: Final = TypeAdapter(LoggedCreate | LoggedCheck)


def parse_logged(raw: bytes) -> LoggedCreate | LoggedCheck:
    """One line of a results log; raises ValueError for a line that is not one inboxcheck wrote."""
    return _LOGGED.validate_json(raw)


class _Output:
    """Where results go: the results log (when given) and a stream (JSON on stdout without a log)."""

    def __init__(self, log: ResultLog | None, stream: IO[str] | None) -> None:
        self.log = log
        self.stream = stream

    def done(self, *, resume: bool, retry_errors: bool) -> dict[int, str]:
        """Refuse to add to earlier results unless resuming them; return what is already done.

        With ``retry_errors``, the results that could not tell are dropped from the log (rewritten)
        so that they are checked again. ``create`` lines are not check results, but are kept.
        """
        if self.log is None:
            return {}
        if not resume:
            if not self.log.is_empty():
                raise ResultsLogError(
                    f"{self.log.path} already holds results; pass --resume to continue that run, "
                    "or choose another file"
                )
            return {}
        done: dict[int, str] = {}

        def note(record: LoggedCreate | LoggedCheck) -> bool:
            if isinstance(record, LoggedCreate):
                return True
            if retry_errors and record.verdict == Verdict.ERROR.value:
                return False
            done[record.line] = str(record.verdict)
            return True

        if retry_errors:
            self.log.rewrite(parse_logged, note)
        else:
            for record in self.log.records(parse_logged):
                note(record)
        return done

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
    from inboxcheck.dns.client import DnsClient, make_resolver

    if concurrency < 1 or per_host < 1:
        raise InboxcheckError("--concurrency and --per-host must be at least 1")
    with _opened(output, not_same_as=path if isinstance(path, Path) else None) as log:
        # The output is small appends and one scan at the start: blocking file I/O is cheaper here
        # than a thread hop per result.
        sink = _Output(log, stream)
        done = sink.done(resume=resume, retry_errors=retry_errors)
        if on_start is not None:
            on_start(len(done))
        presets = presets if presets is not None else load_presets()
        resolver = make_resolver(options.nameservers, timeout=options.timeout)
        dns_client = DnsClient(resolver, timeout=options.timeout, record=False, max_entries=BATCH_DNS_ENTRIES)
        tls = ssl_context or make_ssl_context(options)
        # What every account shares is made once: the registry, like the TLS context and DNS cache.
        specs = specs if specs is not None else registered_checks()
        summary = BatchSummary()
        if log is not None:
            summary.damaged_log_lines = list(log.damaged)
        for number, verdict in done.items():
            summary.verdicts[verdict] += 1
            if verdict == "invalid":
                summary.invalid_lines.append(number)
        host_bounds = _HostBounds(per_host)
        mailbox_bounds = _HostBounds(1)
        queue: asyncio.Queue[BatchItem | None] = asyncio.Queue(maxsize=concurrency * 2)

        def finish(record: BatchLine) -> None:
            sink.write(record)
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
                item.error = str(exc)
                return ()
            return (completion.result(),)

        async def check_one(item: BatchItem) -> None:
            leading = await complete(item) if item.partial is not None else ()
            if item.account is None:
                summary.invalid_lines.append(item.line)
                finish(
                    BatchLine(line=item.line, email_address=item.email, verdict="invalid", error=item.error)
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
                line=item.line, email_address=account.email_address, verdict=report.verdict, report=report
            )
            if record is not None:
                await record(line)
            finish(line)

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                await check_one(item)

        async def produce() -> None:
            items = read_batch(path, env=env) if isinstance(path, Path) else iter(path)
            async for item in _aiter(items):
                if item.line in done:
                    summary.skipped_done += 1
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


async def _aiter(items: Iterator[BatchItem]) -> AsyncIterator[BatchItem]:
    """Hand the event loop back between lines, so a huge file does not starve the workers."""
    for count, item in enumerate(items):
        yield item
        if count % 64 == 0:
            await asyncio.sleep(0)


def read_results(path: Path) -> list[dict[str, Any]]:
    """The complete, readable lines of a results file (for tests and tools)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    results = []
    for line in io.StringIO(text):
        if line.endswith("\n"):
            with contextlib.suppress(ValueError):
                results.append(json.loads(line))
    return results
