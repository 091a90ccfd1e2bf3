"""Checking many accounts: JSONL or CSV in, one JSON line out per account the moment it finishes.

- Bounded concurrency overall, and a bound per server host, so a batch never opens hundreds of
  logins at once against one provider.
- One check at a time per mailbox (same username on the same host): servers cap a mailbox's
  concurrent connections (Dovecot's ``mail_max_userip_connections``, Gmail's ~15), and a batch that
  listed one mailbox twice must not trip the limit it would then report.
- The input is read lazily and results are written as they come, so memory stays flat however long
  the file is.
- The output is the resume log: a run killed at any moment and restarted with ``resume=True`` skips
  the accounts already written (a torn last line is cut off first) and loses none.
- A bad line becomes a result with its line number; the rest goes on.
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
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from inboxcheck._check import CheckSpec
from inboxcheck._errors import AccountError, InboxcheckError
from inboxcheck._input import FIELD_RULES, parse_account
from inboxcheck._models import Account, Report, Verdict
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets

__all__ = ["BatchLine", "BatchSummary", "read_batch", "run_batch"]

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
class _Item:
    line: int
    account: Account | None = None
    email: str | None = None
    error: str | None = None


@dataclass
class BatchSummary:
    """What a batch did: accounts per verdict, the most frequent finding codes, bad lines."""

    verdicts: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    skipped_done: int = 0
    invalid_lines: list[int] = field(default_factory=list)

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
        return int(value)
    if name in _BOOL_FIELDS and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return text


def _parse(line: int, data: object, env: dict[str, str]) -> _Item:
    email = data.get("email_address") if isinstance(data, dict) else None
    try:
        account = parse_account(data, source=f"line {line}", env=env)
    except AccountError as exc:
        return _Item(line, email=email if isinstance(email, str) else None, error=str(exc))
    return _Item(line, account=account, email=account.email_address)


def read_batch(path: Path, *, env: dict[str, str] | None = None) -> Iterator[_Item]:
    """Yield each account of a JSONL or CSV file lazily, with its line number, or the line's problem."""
    env = env if env is not None else dict(os.environ)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InboxcheckError(f"{path}: cannot read the batch file: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(4096)
        handle.seek(0)
        if _detect_format(path, head) == "jsonl":
            yield from _read_jsonl(handle, env)
        else:
            yield from _read_csv(handle, env)


def _read_jsonl(handle: IO[str], env: dict[str, str]) -> Iterator[_Item]:
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        if len(text) > MAX_LINE_BYTES:
            yield _Item(number, error=f"line {number}: longer than {MAX_LINE_BYTES:,} characters")
            continue
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield _Item(number, error=f"line {number}: not valid JSON: {reason}")
            continue
        yield _parse(number, data, env)


def _read_csv(handle: IO[str], env: dict[str, str]) -> Iterator[_Item]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InboxcheckError(f"the CSV header cannot be read: {exc}") from None
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
            return
        except csv.Error as exc:
            yield _Item(reader.line_num, error=f"line {reader.line_num}: not valid CSV: {exc}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) != len(names):
            yield _Item(number, error=f"line {number}: {len(row)} columns, the header has {len(names)}")
            continue
        data = {name: _csv_value(name, cell) for name, cell in zip(names, row, strict=True) if cell != ""}
        yield _parse(number, data, env)


class _Output:
    """The results file: one complete JSON line per account, appended with a single write each."""

    def __init__(self, path: Path | None, stream: IO[str] | None) -> None:
        self.path = path
        self.stream = stream
        self.fd: int | None = None

    def prepare(self, *, resume: bool, retry_errors: bool) -> dict[int, str]:
        """Refuse to overwrite earlier results unless resuming them; return what is already done."""
        if self.path is not None and not resume and self.path.exists() and self.path.stat().st_size > 0:
            raise InboxcheckError(
                f"{self.path} already holds results; pass --resume to continue that run, "
                "or choose another file"
            )
        return self.scan(retry_errors=retry_errors) if resume else {}

    def scan(self, *, retry_errors: bool = False) -> dict[int, str]:
        """The verdict of each line already written, by line number (only that: flat memory).

        Cuts off a torn last line left by a killed run. With ``retry_errors``, the results that could
        not tell are dropped from the file (rewritten atomically) so that they are checked again.
        """
        if self.path is None or not self.path.exists():
            return {}
        done: dict[int, str] = {}
        good_end = 0
        temporary = self.path.with_name(self.path.name + ".tmp")
        with self.path.open("rb") as handle, contextlib.ExitStack() as stack:
            rewrite = stack.enter_context(temporary.open("wb")) if retry_errors else None
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                try:
                    record = json.loads(raw)
                    number = int(record["line"])
                except (ValueError, KeyError, TypeError):
                    break
                good_end += len(raw)
                if record.get("kind") == "create":
                    # connect --batch logs its create calls in the same file; they are not results
                    # of the check, but must survive a rewrite.
                    if rewrite is not None:
                        rewrite.write(raw)
                    continue
                if retry_errors and record.get("verdict") == Verdict.ERROR.value:
                    continue
                done[number] = str(record.get("verdict"))
                if rewrite is not None:
                    rewrite.write(raw)
        if retry_errors:
            temporary.replace(self.path)
        elif good_end != self.path.stat().st_size:
            os.truncate(self.path, good_end)
        return done

    def open(self) -> None:
        if self.path is not None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, record: BatchLine) -> None:
        data = (record.model_dump_json() + "\n").encode()
        if self.fd is not None:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        if self.stream is not None:
            self.stream.write(data.decode())
            self.stream.flush()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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


async def run_batch(
    path: Path,
    *,
    options: CheckOptions,
    output: Path | None = None,
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
) -> BatchSummary:
    """Check every account in ``path``; write each result as it finishes; return the summary."""
    from inboxcheck._check import make_ssl_context
    from inboxcheck._runner import run_checks
    from inboxcheck.dns.client import DnsClient, make_resolver

    if concurrency < 1 or per_host < 1:
        raise InboxcheckError("--concurrency and --per-host must be at least 1")
    # The output is small appends and one scan at the start: blocking file I/O is cheaper here than
    # a thread hop per result.
    sink = _Output(output, stream)
    done = sink.prepare(resume=resume, retry_errors=retry_errors)
    presets = presets if presets is not None else load_presets()
    resolver = make_resolver(options.nameservers, timeout=options.timeout)
    dns_client = DnsClient(resolver, timeout=options.timeout, record=False, max_entries=BATCH_DNS_ENTRIES)
    tls = ssl_context or make_ssl_context(options)
    summary = BatchSummary()
    for number, verdict in done.items():
        summary.verdicts[verdict] += 1
        if verdict == "invalid":
            summary.invalid_lines.append(number)
    host_bounds = _HostBounds(per_host)
    mailbox_bounds = _HostBounds(1)
    queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=concurrency * 2)

    def finish(record: BatchLine) -> None:
        sink.write(record)
        summary.verdicts[str(record.verdict)] += 1
        if record.report is not None:
            summary.codes.update(f.code for f in record.report.findings() if f.severity.value != "info")
        if on_result is not None:
            on_result(record)

    async def check_one(item: _Item) -> None:
        if item.account is None:
            summary.invalid_lines.append(item.line)
            finish(BatchLine(line=item.line, email_address=item.email, verdict="invalid", error=item.error))
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
        # The mailbox first, then the hosts: an account waiting for its mailbox holds no host slot,
        # and every account takes its locks in the same order, so none can wait on another in a ring.
        async with (
            mailbox_bounds.hold(mailboxes),
            host_bounds.hold({account.smtp_host.lower(), account.imap_host.lower()}),
        ):
            report = await run_checks(
                account,
                options=options,
                presets=presets,
                ssl_context=tls,
                dns_client=dns_client,
                specs=specs,
            )
        finish(
            BatchLine(
                line=item.line, email_address=account.email_address, verdict=report.verdict, report=report
            )
        )

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await check_one(item)

    async def produce() -> None:
        async for item in _aiter(read_batch(path, env=env)):
            if item.line in done:
                summary.skipped_done += 1
                continue
            await queue.put(item)
        for _ in range(concurrency):
            await queue.put(None)

    sink.open()
    try:
        workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        producer = asyncio.ensure_future(produce())
        try:
            await asyncio.gather(producer, *workers)
        except BaseException:
            for task in [producer, *workers]:
                task.cancel()
            await asyncio.gather(producer, *workers, return_exceptions=True)
            raise
    finally:
        sink.close()
    return summary


async def _aiter(items: Iterator[_Item]) -> AsyncIterator[_Item]:
    """Hand the event loop back between lines, so a huge file does not starve the workers."""
    for count, item in enumerate(items):
        yield item
        if count % 64 == 0:
            await asyncio.sleep(0)


def read_results(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a results file (for tests and tools)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in io.StringIO(text) if line.endswith("\n")]
