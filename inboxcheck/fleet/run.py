"""``fleet run`` and ``fleet watch``: the batch engine over the store's accounts, each report recorded.

A run works through one round: the accounts due when it began. Each report is recorded with its
round in one transaction, so a run interrupted at any moment (even by SIGKILL) and started again
finishes the same round, and no account gets two reports in it. A round is one run's at a time
(``_runlock``): a second run on the same fleet waits for it, then checks what is due by then, so no
account is logged in to twice in a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inboxcheck.fleet import store
from inboxcheck.fleet.changes import Schedule

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck._batch import BatchLine
    from inboxcheck._models import Account
    from inboxcheck._options import CheckOptions
    from inboxcheck._presets import Presets
    from inboxcheck.fleet._crypto import FleetKey
    from inboxcheck.fleet.oauth import FleetOAuth
    from inboxcheck.fleet.pace import PaceRule

__all__ = ["FleetRunSummary", "run_fleet", "watch_fleet"]


@dataclass
class FleetRunSummary:
    round_id: int | None = None
    resumed: bool = False
    planned: int = 0
    remaining: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    changes: list[dict[str, Any]] = field(default_factory=list)
    delivered: int = 0
    undelivered: int = 0
    finished: bool = False

    @property
    def exit_code(self) -> int:
        """Like ``check --batch``: 1 if an account failed, else 3 if a check could not tell."""
        if self.verdicts.get("fail"):
            return 1
        return 3 if self.verdicts.get("error") else 0

    def describe(self) -> str:
        if self.round_id is None:
            return "no account is due"
        what = "resumed" if self.resumed else "ran"
        counts = ", ".join(f"{n} {v}" for v, n in sorted(self.verdicts.items())) or "none checked"
        lines = [
            f"{what} round {self.round_id}: {self.remaining} of {self.planned} accounts to check: {counts}"
        ]
        for change in self.changes:
            lines.append(f"{change['email_address']}: {change['from']} -> {change['to']}")
        if self.delivered or self.undelivered:
            lines.append(f"webhooks: {self.delivered} delivered, {self.undelivered} to retry")
        return "\n".join(lines)


async def run_fleet(
    engine: AsyncEngine,
    *,
    key: FleetKey,
    options: CheckOptions,
    all_accounts: bool = False,
    concurrency: int = 20,
    per_host: int = 4,
    webhook_urls: Sequence[str] = (),
    webhook_secret: bytes | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    schedule: Schedule | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_result: Callable[[BatchLine], None] | None = None,
    on_wait: Callable[[int | None], None] | None = None,
    pace_rules: Sequence[PaceRule] = (),
    pace_group: str | None = None,
) -> FleetRunSummary:
    """Check the accounts of the round (the unfinished one, else those due) and record each report.

    Nothing is checked when ``key`` does not open every account of the round (WrongKeyError names
    them). Webhook deliveries of the changes are sent as they happen, and earlier ones still pending
    are retried first; they need ``webhook_secret``. While another run has a round of this fleet,
    this one waits for it first (``on_wait`` is told once, with that run's pid if known). Logins
    are paced per provider (preset data and ``pace_rules``), across every process of a PostgreSQL
    fleet (queue workers, other runs) in the same ``pace_group``.
    """
    from inboxcheck._batch import run_batch
    from inboxcheck.fleet._runlock import round_lock
    from inboxcheck.fleet.oauth import batch_items
    from inboxcheck.fleet.pace import make_pace
    from inboxcheck.fleet.webhooks import deliver

    rng = rng or random.Random()
    summary = FleetRunSummary()
    own_client = http_client is None and webhook_secret is not None
    client = http_client
    if own_client:
        import httpx

        client = httpx.AsyncClient(timeout=10.0)
    sending: list[asyncio.Task[tuple[int, int]]] = []
    tasks: list[asyncio.Future[Any]] = []
    held = contextlib.AsyncExitStack()
    closing: list[Callable[[], Awaitable[None]]] = []
    try:
        await held.enter_async_context(round_lock(engine, on_wait=on_wait))
        if webhook_secret is not None and client is not None:
            done, failed = await deliver(engine, secret=webhook_secret, client=client, clock=clock)
            summary.delivered += done
            summary.undelivered += failed
        plan = await store.begin_round(engine, all_accounts=all_accounts, now=clock())
        if plan is None:
            return summary
        summary.round_id, summary.resumed, summary.planned = plan.round_id, plan.resumed, plan.planned
        summary.remaining = len(plan.remaining)
        refresh: dict[int, FleetOAuth] = {}
        loaded = await store.load_accounts(engine, plan.remaining, key=key, refresh=refresh)
        if on_plan is not None:
            on_plan(len(loaded))
        by_id: dict[int, Account] = dict(loaded)

        def recorded(line: BatchLine, done: store.Recorded | None) -> None:
            # Counted, printed and announced only now that its report is committed.
            summary.verdicts[str(line.verdict)] += 1
            if on_result is not None:
                on_result(line)
            if done is not None and done.change is not None:
                summary.changes.append(done.change["change"])
                if done.deliveries and webhook_secret is not None and client is not None:
                    sending.append(
                        asyncio.ensure_future(
                            deliver(
                                engine,
                                secret=webhook_secret,
                                client=client,
                                clock=clock,
                                only=done.deliveries,
                            )
                        )
                    )

        writer = _Writer(engine, schedule=schedule, webhook_urls=webhook_urls, on_recorded=recorded)
        writing = asyncio.create_task(writer.run())
        tasks.append(writing)

        async def record(line: BatchLine) -> None:
            # Handed to the writer, not waited for: the check's slot goes to the next account while
            # the report is committed (its line is counted and printed by ``recorded`` after that).
            assert line.report is not None
            await writer.submit(
                store.ReportEntry(
                    account_id=line.line,
                    round_id=plan.round_id,
                    report=line.report,
                    scrub=_plain_scrubber(by_id[line.line], refresh.get(line.line)),
                    now=clock(),
                    draw=rng.random(),
                ),
                line,
            )

        if presets is None:
            from inboxcheck._presets import load_presets

            presets = load_presets()
        pace = make_pace(engine, presets, pace_rules, group=pace_group)
        closing.append(pace.aclose)
        checking = asyncio.ensure_future(
            run_batch(
                batch_items(engine, loaded, refresh, key=key, timeout=options.timeout, clock=clock),
                options=options,
                concurrency=concurrency,
                per_host=per_host,
                presets=presets,
                ssl_context=ssl_context,
                record=record,
                gate=pace.hold,
            )
        )
        tasks.append(checking)
        await asyncio.wait({checking, writing}, return_when=asyncio.FIRST_COMPLETED)
        if writing.done():
            # The writer ends early only when the store failed: the checks stop now (cancelled
            # below), not at their next report.
            writing.result()
        await checking
        await writer.close()
        await writing
        summary.finished = await store.finish_round(engine, plan.round_id, now=clock())
        for done, failed in await asyncio.gather(*sending):
            summary.delivered += done
            summary.undelivered += failed
        return summary
    finally:
        for task in [*sending, *tasks]:
            task.cancel()
        if sending or tasks:
            await asyncio.gather(*sending, *tasks, return_exceptions=True)
        await held.aclose()
        if own_client and client is not None:
            await client.aclose()
        for close in closing:
            await close()


def _plain_scrubber(account: Account, oauth: FleetOAuth | None = None) -> Callable[[str], str]:
    """A second guard over a report the runner has already scrubbed (every wire form of every
    secret, with the run's one Scrubber): the passwords and their base64 (and an OAuth2 account's
    refresh token and client secret), replaced again before they could reach the store. Cheap,
    where a second full Scrubber per account is not."""
    import base64

    secrets = [account.smtp_password.get_secret_value(), account.imap_password.get_secret_value()]
    if oauth is not None:
        secrets.append(oauth.request.refresh_token.get_secret_value())
        if oauth.request.client_secret is not None:
            secrets.append(oauth.request.client_secret.get_secret_value())
    forms = {
        form
        for secret in secrets
        for form in (secret, base64.b64encode(secret.encode()).decode())
        if len(secret) >= 4
    }

    def scrub(text: str) -> str:
        for form in forms:
            text = text.replace(form, "***")
        return text

    return scrub


class _Writer:
    """Records reports in groups, in a task of its own: whatever has arrived while the last group
    was being written goes in the next transaction (each report still with its round, state and
    change). A check hands its report over and its slot goes on to the next account; the report
    counts (``on_recorded``) only once its transaction is committed, so a run killed at any moment
    loses nothing that it counted. At most ``PENDING`` reports wait uncommitted: a check that would
    be one more waits for room.

    The transaction runs on the checks' event loop, so each of its statements waits for the loop's
    next turn (a group of 8 took 140 ms on a busy machine); when each check waited for its commit,
    that was 160 ms of every account's slot (a third of it) at 200 lab accounts. Now a slow
    transaction only makes the next group larger; the writer also lingers ``LINGER`` seconds for
    more reports before it begins one (groups of about 35 instead of about 12: less CPU a report).
    """

    PENDING = 1000
    MAX_GROUP = 200
    LINGER = 0.2

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        schedule: Schedule | None,
        webhook_urls: Sequence[str],
        on_recorded: Callable[[BatchLine, store.Recorded | None], None],
    ) -> None:
        self.engine = engine
        self.schedule = schedule
        self.webhook_urls = webhook_urls
        self.on_recorded = on_recorded
        self.failed: BaseException | None = None
        self.queue: asyncio.Queue[tuple[store.ReportEntry, BatchLine] | None] = asyncio.Queue()
        self.pending = 0
        self.room = asyncio.Event()
        self.closed = asyncio.Event()

    async def submit(self, entry: store.ReportEntry, line: BatchLine) -> None:
        """Queue ``entry`` (``line`` is what ``on_recorded`` is told with its result); raises what
        made the writer fail, if it did."""
        while self.failed is None and self.pending >= self.PENDING:
            self.room.clear()
            await self.room.wait()
        if self.failed is not None:
            raise self.failed
        self.pending += 1
        self.queue.put_nowait((entry, line))

    async def close(self) -> None:
        self.closed.set()
        await self.queue.put(None)

    async def run(self) -> None:
        try:
            await self._run()
        except BaseException as exc:
            # Every check handing over a report, now or later, learns that the store failed.
            self.failed = exc
            self.room.set()
            raise

    async def _run(self) -> None:
        closing = False
        while not closing:
            first = await self.queue.get()
            if first is None:
                return
            group = [first]
            if not self.closed.is_set() and self.queue.qsize() < self.MAX_GROUP:
                # A moment for more to arrive: fewer, larger transactions (the checks do not wait).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closed.wait(), self.LINGER)
            while len(group) < self.MAX_GROUP and not self.queue.empty():
                item = self.queue.get_nowait()
                if item is None:
                    closing = True
                    break
                group.append(item)
            recorded = await store.record_reports(
                self.engine,
                [entry for entry, _ in group],
                schedule=self.schedule,
                webhook_urls=self.webhook_urls,
            )
            self.pending -= len(group)
            self.room.set()
            for (_, line), result in zip(group, recorded, strict=True):
                self.on_recorded(line, result)


async def next_due(engine: AsyncEngine) -> float | None:
    import sqlalchemy as sa

    from inboxcheck.fleet._schema import accounts

    async with engine.connect() as conn:
        value = (
            await conn.execute(
                sa.select(sa.func.min(accounts.c.next_due)).where(accounts.c.paused.is_(False))
            )
        ).scalar_one_or_none()
    return float(value) if value is not None else None


async def watch_fleet(
    engine: AsyncEngine,
    *,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.time,
    max_sleep: float = 60.0,
    on_round: Callable[[FleetRunSummary], None] | None = None,
    **run: Any,
) -> int:
    """Run rounds as accounts fall due until ``stop`` is set; how many rounds ran.

    When ``stop`` is set during a round, its checks are cancelled (each stops its logins before it
    returns); the reports already recorded stay, the round stays open and the next run finishes it.
    """
    rounds = 0
    while not stop.is_set():
        task = asyncio.ensure_future(run_fleet(engine, clock=clock, **run))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            stopper.cancel()
            break
        stopper.cancel()
        summary = task.result()
        if summary.round_id is not None:
            rounds += 1
            if on_round is not None:
                on_round(summary)
        due = await next_due(engine)
        wait = max_sleep if due is None else min(max(due - clock(), 0.5), max_sleep)
        if summary.round_id is not None and not summary.finished:
            wait = 0.5
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
    return rounds
