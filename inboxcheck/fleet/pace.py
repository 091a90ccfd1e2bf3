"""The pace of a fleet's logins per provider: so many a minute, so many at once (preset data).

Re-checking thousands of mailboxes of one provider from one address must not look like credential
stuffing. The batch engine already bounds accounts per server host; this bounds them per provider,
whose many hosts (smtp.gmail.com, imap.gmail.com) are one service to its abuse detection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inboxcheck._models import Account
    from inboxcheck._presets import Presets

__all__ = ["ProviderPace", "RateWindow"]


@dataclass
class RateWindow:
    """At most ``limit`` starts in any ``span`` seconds."""

    limit: int
    span: float = 60.0
    clock: Callable[[], float] = time.monotonic
    starts: collections.deque[float] = field(default_factory=collections.deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wait_needed(self, now: float) -> float:
        """Seconds until one more start is allowed (pure: for the tests and for :meth:`take`)."""
        while self.starts and now - self.starts[0] >= self.span:
            self.starts.popleft()
        if len(self.starts) < self.limit:
            return 0.0
        return self.starts[0] + self.span - now

    async def take(self) -> None:
        async with self.lock:
            wait = self.wait_needed(self.clock())
            if wait > 0:
                # The oldest start leaves the window then; the lock keeps anyone from taking its place.
                await asyncio.sleep(wait)
                self.wait_needed(self.clock())
            self.starts.append(self.clock())


class ProviderPace:
    """A gate for ``run_batch``: each account of a paced provider waits for its turn."""

    def __init__(self, presets: Presets) -> None:
        self.presets = presets
        self._windows: dict[str, RateWindow] = {}
        self._at_once: dict[str, asyncio.Semaphore] = {}
        self._providers: dict[tuple[str, int, str, int], str | None] = {}

    def provider(self, account: Account) -> str | None:
        # A fleet has few distinct servers and many accounts on each: each pair is matched once
        # (matching walks every preset's host patterns).
        servers = (account.smtp_host, account.smtp_port, account.imap_host, account.imap_port)
        if servers not in self._providers:
            self._providers[servers] = self._match(account)
        return self._providers[servers]

    def _match(self, account: Account) -> str | None:
        preset = self.presets.by_smtp_host(account.smtp_host, account.smtp_port) or self.presets.by_imap_host(
            account.imap_host, account.imap_port
        )
        if preset is None:
            return None
        limits = preset.limits
        if limits.fleet_logins_per_minute is None and limits.fleet_logins_at_once is None:
            return None
        if preset.id not in self._at_once:
            self._at_once[preset.id] = asyncio.Semaphore(limits.fleet_logins_at_once or 1_000_000)
            if limits.fleet_logins_per_minute is not None:
                self._windows[preset.id] = RateWindow(limits.fleet_logins_per_minute)
        return preset.id

    @contextlib.asynccontextmanager
    async def hold(self, account: Account) -> AsyncIterator[None]:
        provider = self.provider(account)
        if provider is None:
            yield
            return
        async with self._at_once[provider]:
            window = self._windows.get(provider)
            if window is not None:
                await window.take()
            yield
