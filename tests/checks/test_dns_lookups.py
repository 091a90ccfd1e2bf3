"""The one DNS door (checks/dns/lookups.py): every lookup ends when the run's deadline does."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from inboxcheck._check import CheckContext
from inboxcheck._models import Account
from inboxcheck._options import CheckOptions, Nameserver
from inboxcheck._presets import load_presets
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.dns.client import DnsStatus
from tests.helpers import custom_payload


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A UDP port on loopback that takes every query and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()
    finally:
        sock.close()


def _context(server: tuple[str, int], now: list[float]) -> CheckContext:
    host, port = server
    return CheckContext(
        Account.model_validate(custom_payload()),
        # --timeout alone would wait a minute for the silent server.
        options=CheckOptions(nameservers=(Nameserver(host=host, port=port),), timeout=60, deadline=30),
        presets=load_presets(),
        match=None,
        clock=lambda: now[0],
    )


async def test_a_lookup_after_the_runs_deadline_is_could_not_tell_at_once(
    silent_server: tuple[str, int],
) -> None:
    now = [0.0]
    ctx = _context(silent_server, now)
    now[0] = 31.0  # the run's 30 s are over
    lookups = Lookups(ctx)
    lookup = await lookups.get("mail.example.test", "TXT")
    assert lookup.answer.status is DnsStatus.TIMEOUT
    assert not lookup.definite  # "could not tell", never "missing"
    assert "deadline" in (lookup.answer.error or "")
    assert [u.name for u in lookups.unavailable()] == ["mail.example.test"]


async def test_both_address_lookups_go_through_the_door(silent_server: tuple[str, int]) -> None:
    now = [0.0]
    ctx = _context(silent_server, now)
    now[0] = 31.0
    lookups = Lookups(ctx)
    a, aaaa = await lookups.addresses("mail.example.test")
    assert (a.rdtype, aaaa.rdtype) == ("A", "AAAA")
    assert {a.answer.status, aaaa.answer.status} == {DnsStatus.TIMEOUT}
    assert len(lookups.seen) == 2
