"""The run's DNS client: one query per (name, type), a bounded memory of answers."""

from __future__ import annotations

import asyncio

import dns.asyncresolver

from inboxcheck.dns.client import DnsClient, DnsStatus


async def test_concurrent_asks_share_one_query_and_answers_are_remembered(
    lab_resolver: dns.asyncresolver.Resolver,
) -> None:
    client = DnsClient(lab_resolver, timeout=2)
    answers = await asyncio.gather(*(client.query("lab.test", "MX") for _ in range(5)))
    assert {a.status for a in answers} == {DnsStatus.OK}
    assert client.sent == 1
    again = await client.query("LAB.test.", "mx")
    assert again is answers[0] and client.sent == 1


async def test_the_memory_is_bounded_oldest_first(lab_resolver: dns.asyncresolver.Resolver) -> None:
    client = DnsClient(lab_resolver, timeout=2, max_entries=2, record=False)
    for name in ("lab.test", "mail.lab.test", "smtp.lab.test"):
        await client.query(name, "A")
    assert client.sent == 3 and client.queries == []
    await client.query("smtp.lab.test", "A")
    assert client.sent == 3  # still remembered
    await client.query("lab.test", "A")
    assert client.sent == 4  # forgotten: the oldest went first


async def test_a_resolver_with_encrypted_servers_gets_could_not_tell() -> None:
    import dns.nameserver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.DoTNameserver("127.0.0.1", 853)]
    answer = await DnsClient(resolver, timeout=1).query("lab.test", "MX")
    assert answer.status is DnsStatus.ERROR and not answer.definite
    assert answer.error is not None and "DNS over TLS" in answer.error
