"""Shared fixtures. The lab of real servers starts lazily: only sessions that use it pay.

Two rules for the whole suite live here too:

- A test that uses the lab (the ``lab`` fixture, directly or through another fixture) carries
  ``@pytest.mark.lab``, so ``-m "not lab"`` really leaves the servers out; collection fails otherwise.
- Property tests are replayable. CI (``.ci/run`` sets ``HYPOTHESIS_PROFILE=ci``; a ``CI`` variable
  does too) runs Hypothesis derandomized: each test's examples follow from the test itself, so a
  failure in CI fails the same way on any machine with ``HYPOTHESIS_PROFILE=ci``, and no run fails
  by the luck of its draw. Every profile prints the failing example and its ``@reproduce_failure``
  blob. Elsewhere the examples stay random (and remembered in .hypothesis/), to keep finding new ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import dns.asyncresolver
import dns.nameserver
import pytest
from hypothesis import settings

from lab import Lab

settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def unmarked_lab_tests(items: list[pytest.Item]) -> list[str]:
    """The tests that use the lab fixture without the ``lab`` marker."""
    return [
        item.nodeid
        for item in items
        if "lab" in getattr(item, "fixturenames", ()) and item.get_closest_marker("lab") is None
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = unmarked_lab_tests(items)
    if unmarked:
        raise pytest.UsageError(
            "these tests use the lab without @pytest.mark.lab:\n  " + "\n  ".join(unmarked)
        )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab (Postfix, Dovecot, NSD on loopback) for the whole test session."""
    with Lab() as running:
        yield running


@pytest.fixture
def lab_resolver(lab: Lab) -> dns.asyncresolver.Resolver:
    """A resolver that asks only the lab's NSD; the system resolver is never used or changed."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    address, port = lab.nameserver
    resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port)]
    resolver.timeout = 2.0
    resolver.lifetime = 2.0
    return resolver
