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
- A send test's message is sent at most once per account: its ``send_test`` line is on disk before
  DATA, and a resume that finds it with no check line after it sends no second message
  (``send.message.outcome_unknown``) unless told to (``resend_test``).
- DNS lookups are shared across the batch (many accounts share a domain), within a bounded cache;
  per-host bounds exist only for the hosts in use. Both keep memory flat however many domains and
  hosts the file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, TypeVar

from inboxcheck._batch_input import (
    MAX_LINE_BYTES as MAX_LINE_BYTES,
    STDIN as STDIN,
    BatchItem as BatchItem,
    _issues,
    _one_line,
    count_accounts as count_accounts,
    read_batch as read_batch,
)
from inboxcheck._batch_log import (
    Logged,
    LoggedCheck as LoggedCheck,
    LoggedCreate as LoggedCreate,
    LoggedReport as LoggedReport,
    LogState as LogState,
    damaged_send_test,
    digested as digested,
    item_digest as item_digest,
    parse_logged as parse_logged,
    read_results as read_results,
    read_state as read_state,
    short as short,
)
from inboxcheck._batch_results import (
    BatchLine,
    BatchSummary,
    BatchSummaryDocument,
    FieldIssue,
    LogHeader,
    SendTestLine,
)
from inboxcheck._check import SEND_UNKNOWN, CheckSpec, SendJournal, SentTest
from inboxcheck._errors import AccountError, InboxcheckError, ResultsLogError
from inboxcheck._input import parse_account
from inboxcheck._jsonl import ResultLog
from inboxcheck._models import Account, CheckResult, Verdict
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


class _Output:
    """Where results go: the results log (when given) and a stream (JSON on stdout without a log)."""

    def __init__(self, log: ResultLog | None, stream: IO[str] | None) -> None:
        self.log = log
        self.stream = stream

    def done(self, *, resume: bool, retry_errors: bool) -> LogState:
        """Refuse to add to earlier results unless resuming them; return what is already done.

        With ``retry_errors``, the results that could not tell are dropped from the log (rewritten)
        so that they are checked again. ``create`` lines are not check results, but are kept; so is a
        ``send_test`` line, unless the check line dropped after it says how its message was answered
        (else the message may have been delivered, and is not sent again). A log with no header (a
        new one, or one of an older inboxcheck) gets one.
        """
        if self.log is None:
            return LogState(LogHeader.new())
        if not resume and not self.log.is_empty():
            raise ResultsLogError(
                f"{self.log.path} already holds results; pass --resume to continue that run, "
                "or choose another file"
            )
        state = LogState()
        answered: set[bytes] = set()  # digests whose test message a dropped check line answered

        def keep(record: Logged) -> bool:
            if isinstance(record, LoggedCheck) and record.verdict == Verdict.ERROR.value:
                return False
            if isinstance(record, SendTestLine) and short(record.digest) in answered:
                return False
            state.add(record)
            return True

        if retry_errors:
            sent: set[bytes] = set()
            # Damaged send_test lines stay in the rewritten log: unknown unless a result follows.
            damaged: dict[bytes, bytes] = {}
            for line, record in self.log.entries(parse_logged):
                if record is None and (named := damaged_send_test(line.data)) is not None:
                    damaged[short(named[0])] = line.data or b""
                if isinstance(record, SendTestLine):
                    sent.add(short(record.digest))
                elif isinstance(record, LoggedCheck) and record.digest is not None:
                    digest = short(record.digest)
                    if digest in sent and record.verdict == Verdict.ERROR.value and record.send_answered:
                        answered.add(digest)
                    if record.verdict != Verdict.ERROR.value or record.send_answered:
                        damaged.pop(digest, None)
                    sent.discard(digest)
            self.log.rewrite(parse_logged, keep)
            for data in damaged.values():
                state.add_damaged(data)
        else:
            state = read_state(self.log.entries(parse_logged))
        if state.header is None:
            state.header = LogHeader.new()
            self.log.append((state.header.model_dump_json() + "\n").encode(), durable=True)
        return state

    def write_ahead(self, record: SendTestLine) -> None:
        """A test message about to leave: on disk before it does (not on the stream: no result)."""
        assert self.log is not None
        self.log.append((record.model_dump_json() + "\n").encode(), durable=True)

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
    resend_test: bool = False,
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

    With ``options.send_test`` and an output log, each test message is written ahead in the log
    (a ``send_test`` line, on disk before DATA). A resumed account whose message was sent by an
    earlier run that left no check line for it is checked again without sending another: its
    ``send.message`` says ``send.message.outcome_unknown``. ``resend_test`` (``--resend-test``)
    sends it again instead.
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
            journal = _journal(sink, state, item, account) if options.send_test and log is not None else None
            if journal is not None and resend_test:
                journal = SendJournal(earlier=None, write_ahead=journal.write_ahead)
            # The mailbox first, then the hosts: an account waiting for its mailbox holds no host
            # slot, and every account takes its locks in the same order, so none waits in a ring.
            async with (
                mailbox_bounds.hold(mailboxes),
                host_bounds.hold({account.smtp_host.lower(), account.imap_host.lower()}),
                gate(account) if gate is not None else contextlib.nullcontext(),
            ):
                if item.prepare is not None:
                    # The fleet's OAuth2 refresh: a fresh access token for the logins that follow.
                    account, prepared = await item.prepare(account)
                    leading = (*leading, *prepared)
                report = await run_checks(
                    account,
                    options=options,
                    presets=presets,
                    ssl_context=tls,
                    dns_client=dns_client,
                    specs=specs,
                    leading=leading,
                    send_journal=journal,
                )
            if any(f.code == SEND_UNKNOWN for f in report.findings()):
                summary.send_unknown.append(item.line)
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


def _journal(sink: _Output, state: LogState, item: BatchItem, account: Account) -> SendJournal:
    """The results log's part in ``item``'s send test: its earlier message, and the write ahead."""

    def write_ahead(sent: SentTest) -> None:
        sink.write_ahead(
            SendTestLine(
                line=item.line,
                digest=item.digest,
                email_address=account.email_address,
                recipient=sent.recipient,
                token=sent.token,
                message_id=sent.message_id,
                sent_at=sent.sent_at or datetime.now(UTC),
            )
        )

    return SendJournal(earlier=state.sent_tests.get(short(item.digest)), write_ahead=write_ahead)


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
