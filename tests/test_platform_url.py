"""The API URL's loopback rule resolves a ``localhost`` name without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from inboxcheck._errors import OptionsError
from inboxcheck.platform.client import _check_base_url, confirm_loopback


class _CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_localhost_name_is_resolved_off_the_event_loop() -> None:
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    url = _check_base_url("http://localhost:8000", allow_insecure_http=False)
    assert executor.calls == 0  # the synchronous check resolves nothing
    await confirm_loopback(url)  # localhost is 127.0.0.1 / ::1 here
    assert executor.calls == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://[::1]:8000", "https://api.example"])
async def test_addresses_and_https_need_no_lookup(url: str) -> None:
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    await confirm_loopback(httpx.URL(url))
    assert executor.calls == 0


def test_plain_http_to_another_name_is_refused_before_any_lookup() -> None:
    with pytest.raises(OptionsError, match="plain http"):
        _check_base_url("http://api.example", allow_insecure_http=False)
