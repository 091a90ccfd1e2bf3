"""Shared fixtures. The lab of real servers starts lazily: only sessions that use it pay."""

from __future__ import annotations

from collections.abc import Iterator

import dns.asyncresolver
import dns.nameserver
import pytest

from lab import Lab


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
