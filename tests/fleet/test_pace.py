"""The fleet's pace per provider: logins a minute and at once, from the preset data."""

from __future__ import annotations

import asyncio

from inboxcheck._models import Account
from inboxcheck._presets import load_presets
from inboxcheck.fleet.pace import ProviderPace, RateWindow
from tests.helpers import batch_user, google_payload


def test_the_window_allows_its_limit_then_waits_for_the_oldest_start_to_leave() -> None:
    window = RateWindow(3, span=60.0)
    for at in (0.0, 1.0, 2.0):
        assert window.wait_needed(at) == 0
        window.starts.append(at)
    assert window.wait_needed(30.0) == 30.0
    assert window.wait_needed(60.0) == 0  # the start at 0 has left the window
    assert list(window.starts) == [1.0, 2.0]


def test_google_and_microsoft_are_paced_by_their_preset_and_custom_hosts_are_not() -> None:
    presets = load_presets()
    for preset_id in ("google-workspace", "microsoft-365", "outlook-com"):
        limits = presets.get(preset_id).limits
        assert limits.fleet_logins_per_minute and limits.fleet_logins_at_once
    pace = ProviderPace(presets)
    assert pace.provider(Account.model_validate(google_payload())) == "google-workspace"
    assert pace.provider(Account.model_validate(batch_user(1))) is None


async def test_no_more_than_the_provider_allows_at_once() -> None:
    presets = load_presets()
    pace = ProviderPace(presets)
    at_once = presets.get("google-workspace").limits.fleet_logins_at_once
    assert at_once is not None
    account = Account.model_validate(google_payload())
    inside = peak = 0

    async def login() -> None:
        nonlocal inside, peak
        async with pace.hold(account):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(login() for _ in range(at_once * 2)))
    assert peak == at_once
