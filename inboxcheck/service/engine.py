"""What every request of one app shares, as a batch shares it: the DNS cache, the TLS context, the
presets, the registry of checks, and the slots (``--concurrency``) with their small wait queue.

The DNS cache is a batch's (:class:`~inboxcheck.dns.client.DnsClient`), renewed every
``dns_cache_seconds``: a batch lives for minutes, a service for months, and a record the user has
just fixed must show in a later check. A run keeps the client it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from inboxcheck._batch import BATCH_DNS_ENTRIES
from inboxcheck._models import Account, CheckResult, Report
from inboxcheck._options import CheckOptions
from inboxcheck.service.metrics import Metrics
from inboxcheck.service.settings import ServiceSettings

if TYPE_CHECKING:
    import ssl

    from inboxcheck._check import CheckSpec
    from inboxcheck._presets import Presets
    from inboxcheck.dns.client import DnsClient

__all__ = ["Busy", "Engine", "ShuttingDown"]


class Busy(Exception):
    """Every slot is taken and the wait queue is full."""


class ShuttingDown(Exception):
    """The server is draining after SIGTERM: no new check starts."""


class Engine:
    """The shared parts of one app. Made in the app factory; nothing module-level."""

    def __init__(self, settings: ServiceSettings) -> None:
        from inboxcheck._check import make_ssl_context
        from inboxcheck._presets import load_presets
        from inboxcheck.checks import registered_checks

        self.settings = settings
        options = settings.options
        self.presets: Presets = load_presets()
        self.specs: Sequence[CheckSpec] = registered_checks()
        self.tls: ssl.SSLContext = make_ssl_context(options)
        self.metrics = Metrics()
        self.draining = False
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._dns: DnsClient | None = None
        self._dns_born = 0.0

    def dns(self) -> DnsClient:
        """The shared DNS client, a new one once the current is ``dns_cache_seconds`` old."""
        from inboxcheck.dns.client import DnsClient

        now = time.monotonic()
        if self._dns is None or now - self._dns_born > self.settings.dns_cache_seconds:
            self._dns = DnsClient(
                self.settings.options.nameservers,
                timeout=self.settings.options.timeout,
                record=False,
                max_entries=BATCH_DNS_ENTRIES,
            )
            self._dns_born = now
        return self._dns

    @contextlib.asynccontextmanager
    async def slot(self, *, queue: bool = True) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` slots. A request (``queue=True``) waits only if the wait
        queue has room, else :class:`Busy`; a batch's worker always waits (the batch is its queue)."""
        if self.draining:
            raise ShuttingDown
        metrics = self.metrics
        if queue and self._slots.locked() and metrics.waiting >= self.settings.queue:
            metrics.refused["busy"] += 1
            raise Busy
        metrics.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            metrics.waiting -= 1
        metrics.in_flight += 1
        try:
            yield
        finally:
            metrics.in_flight -= 1
            self._slots.release()

    async def check(
        self, account: Account, options: CheckOptions, *, leading: Sequence[CheckResult] = ()
    ) -> Report:
        """One account's report, with the shared cache and TLS context; counted in the metrics."""
        from inboxcheck._runner import run_checks

        started = time.monotonic()
        try:
            report = await run_checks(
                account,
                options=options,
                presets=self.presets,
                ssl_context=self.tls,
                dns_client=self.dns(),
                specs=self.specs,
                leading=leading,
            )
        except asyncio.CancelledError:
            self.metrics.observe(None, time.monotonic() - started, outcome="cancelled")
            raise
        self.metrics.observe(report, time.monotonic() - started)
        return report

    async def complete(
        self, data: dict[str, Any], options: CheckOptions, *, source: str, trust_hosts: Sequence[str] = ()
    ) -> tuple[dict[str, Any], tuple[CheckResult, ...]]:
        """A partial payload completed by discovery, as ``check`` completes one (``trust_hosts`` as
        its ``--trust-host``), and its result."""
        from inboxcheck.discovery.complete import complete_payload

        completion = await complete_payload(
            data,
            options=options,
            source=source,
            presets=self.presets,
            ssl_context=self.tls,
            dns_client=self.dns(),
            trust_hosts=trust_hosts,
        )
        return dict(completion.payload), (completion.result(),)
