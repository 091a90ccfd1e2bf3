"""Batches the way internet.nl's batch API runs them: posted, polled, streamed, cancelled.

A batch's accounts (with their passwords) live in memory only, and only until each is checked:
the batch holds them in a queue its workers take from, so a finished batch holds none. What a
batch keeps is its result lines (scrubbed reports, as ``check --batch`` writes them) for the
client to read; the store keeps ``max_batches`` batches, dropping the oldest finished one first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from inboxcheck._batch import BatchItem, BatchLine, _HostBounds
from inboxcheck._batch_input import _parse
from inboxcheck._errors import AccountError
from inboxcheck._input import parse_account
from inboxcheck._models import CheckResult
from inboxcheck.service.models import BatchState, BatchStatus

if TYPE_CHECKING:
    from inboxcheck._options import CheckOptions
    from inboxcheck.service.engine import Engine

__all__ = ["Batch", "BatchStore", "TooManyBatches", "parse_batch"]


class TooManyBatches(Exception):
    pass


def parse_batch(raw: bytes, *, limit: int, oauth: bool = False) -> list[BatchItem]:
    """The accounts of a JSON array or JSONL body, one item each with its line (or position) number;
    an unusable one is an item with its problem, as ``check --batch`` reads a file (with ``oauth``,
    as ``fleet add`` reads one: an account's ``oauth`` object beside its payload).

    Raises :class:`AccountError` when the body is neither, or holds more than ``limit`` accounts."""
    from inboxcheck._input import decode_json

    source = "request body"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccountError(source, message=f"not UTF-8 text (bad byte at offset {exc.start})") from None
    stripped = text.lstrip()
    items: list[BatchItem] = []
    if stripped.startswith("["):
        try:
            rows = decode_json(stripped)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise AccountError(
                source, message=f"not a JSON array of accounts ({type(exc).__name__})"
            ) from None
        assert isinstance(rows, list)
        if len(rows) > limit:
            raise AccountError(source, message=f"holds {len(rows):,} accounts; at most {limit:,} a batch")
        items = [_parse(number, row, {}, oauth) for number, row in enumerate(rows, 1)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if len(items) >= limit:
                raise AccountError(
                    source, message=f"holds more than {limit:,} accounts; at most {limit:,} a batch"
                )
            try:
                data = decode_json(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                items.append(BatchItem(number, error=f"line {number}: not valid JSON ({type(exc).__name__})"))
                continue
            items.append(_parse(number, data, {}, oauth))
    if not items:
        raise AccountError(source, message="holds no accounts; give a JSON array or JSON lines of accounts")
    return items


class Batch:
    """One batch: its pending accounts (dropped as they are taken), its result lines, its state."""

    def __init__(self, items: list[BatchItem]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.total = len(items)
        self._pending: deque[BatchItem] = deque(items)
        self.lines: list[str] = []
        self.counts: Counter[str] = Counter()
        self.created_at = datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.state = BatchState.QUEUED
        self._started: float | None = None
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state in (BatchState.DONE, BatchState.CANCELLED)

    def status(self) -> BatchStatus:
        done = len(self.lines)
        eta = None
        if self._started is not None and done and not self.finished:
            eta = round((time.monotonic() - self._started) / done * (self.total - done), 1)
        return BatchStatus(
            id=self.id,
            state=self.state,
            total=self.total,
            done=done,
            counts=dict(self.counts),
            created_at=self.created_at,
            finished_at=self.finished_at,
            eta_seconds=0.0 if self.state is BatchState.DONE else eta,
        )

    def _add(self, record: BatchLine) -> None:
        self.lines.append(record.model_dump_json() + "\n")
        self.counts[str(record.verdict)] += 1
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _finish(self, state: BatchState) -> None:
        self._pending.clear()  # the credentials not yet checked go with the batch's end
        self.state = state
        self.finished_at = datetime.now(UTC)
        self._wake()

    async def results(self) -> AsyncIterator[str]:
        """Every result line, those already there first, then each as it comes, until the end."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.lines):
                yield self.lines[sent]
                sent += 1
            if self.finished:
                return
            await changed.wait()

    async def run(
        self, engine: Engine, options: CheckOptions, *, workers: int, trust_hosts: Sequence[str] = ()
    ) -> None:
        """Check every account, ``workers`` at a time; a partial payload is completed by discovery
        first, ``trust_hosts`` as its ``--trust-host``."""
        self.state = BatchState.RUNNING
        self._started = time.monotonic()
        hosts = _HostBounds(engine.settings.per_host)
        mailboxes = _HostBounds(1)

        async def check_one(item: BatchItem) -> None:
            leading: tuple[CheckResult, ...] = ()
            if item.partial is not None:
                try:
                    payload, leading = await engine.complete(
                        item.partial, options, source=f"line {item.line}", trust_hosts=trust_hosts
                    )
                    item.account = parse_account(payload, source=f"line {item.line}", env={})
                except AccountError as exc:
                    item.error = str(exc)
            account = item.account
            if account is None:
                self._add(
                    BatchLine(line=item.line, email_address=item.email, verdict="invalid", error=item.error)
                )
                return
            # The same bounds as check --batch: one check a mailbox, per_host a server host.
            async with (
                mailboxes.hold(
                    {
                        f"smtp {account.smtp_username.lower()} {account.smtp_host.lower()}",
                        f"imap {account.imap_username.lower()} {account.imap_host.lower()}",
                    }
                ),
                hosts.hold({account.smtp_host.lower(), account.imap_host.lower()}),
                engine.slot(queue=False),
            ):
                report = await engine.check(account, options, leading=leading)
            self._add(
                BatchLine(
                    line=item.line, email_address=account.email_address, verdict=report.verdict, report=report
                )
            )

        async def worker() -> None:
            while self._pending:
                item = self._pending.popleft()
                await check_one(item)

        tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, min(workers, self.total)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                if not task.cancelling():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._finish(BatchState.CANCELLED)
            raise
        self._finish(BatchState.DONE)


def _note_failure(task: asyncio.Task[None]) -> None:
    """A batch that ended on a bug: logged by the exception's type only (its text could hold input)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logging.getLogger("inboxcheck.service").error(
            "a batch stopped on an internal error (%s)", type(exc).__name__
        )


class BatchStore:
    """The batches of one app, at most ``limit``; started, cancelled and dropped here."""

    def __init__(self, engine: Engine, *, limit: int, keep_seconds: float) -> None:
        self.engine = engine
        self.limit = limit
        self.keep_seconds = keep_seconds
        self._batches: OrderedDict[str, Batch] = OrderedDict()

    def get(self, batch_id: str) -> Batch | None:
        self._expire()
        return self._batches.get(batch_id)

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for batch in list(self._batches.values()):
            if (
                batch.finished_at is not None
                and (now - batch.finished_at).total_seconds() > self.keep_seconds
            ):
                del self._batches[batch.id]

    def start(
        self, items: list[BatchItem], options: CheckOptions, *, trust_hosts: Sequence[str] = ()
    ) -> Batch:
        self._expire()
        if len(self._batches) >= self.limit:
            oldest = next((b for b in self._batches.values() if b.finished), None)
            if oldest is None:
                raise TooManyBatches
            del self._batches[oldest.id]
        batch = Batch(items)
        self._batches[batch.id] = batch
        batch.task = asyncio.ensure_future(
            batch.run(self.engine, options, workers=self.engine.settings.concurrency, trust_hosts=trust_hosts)
        )
        batch.task.add_done_callback(_note_failure)
        return batch

    async def cancel(self, batch: Batch) -> None:
        """Stop the batch: its checks are cancelled and their logins closed before this returns."""
        task = batch.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if not batch.finished:
            batch._finish(BatchState.CANCELLED)

    async def close(self) -> None:
        for batch in list(self._batches.values()):
            await self.cancel(batch)
