"""The run's DNS client: one query per (name, type), a bounded memory of answers."""

from __future__ import annotations

import asyncio

import pytest

from inboxcheck._options import Nameserver
from inboxcheck.dns.client import DnsClient, DnsStatus
from lab import Lab


@pytest.fixture
def lab_servers(lab: Lab) -> list[Nameserver]:
    """The lab's NSD, the only server the tests ask."""
    host, port = lab.nameserver
    return [Nameserver(host=host, port=port)]


@pytest.mark.lab
async def test_concurrent_asks_share_one_query_and_answers_are_remembered(
    lab_servers: list[Nameserver],
) -> None:
    client = DnsClient(lab_servers, timeout=2)
    answers = await asyncio.gather(*(client.query("lab.test", "MX") for _ in range(5)))
    assert {a.status for a in answers} == {DnsStatus.OK}
    assert client.sent == 1
    again = await client.query("LAB.test.", "mx")
    assert again is answers[0] and client.sent == 1


@pytest.mark.lab
async def test_the_memory_is_bounded_oldest_first(lab_servers: list[Nameserver]) -> None:
    client = DnsClient(lab_servers, timeout=2, max_entries=2, record=False)
    for name in ("lab.test", "mail.lab.test", "smtp.lab.test"):
        await client.query(name, "A")
    assert client.sent == 3 and client.queries == []
    await client.query("smtp.lab.test", "A")
    assert client.sent == 3  # still remembered
    await client.query("lab.test", "A")
    assert client.sent == 4  # forgotten: the oldest went first


@pytest.mark.lab
async def test_cached_gives_a_finished_answer_only_and_keeps_it_recent(
    lab_servers: list[Nameserver],
) -> None:
    client = DnsClient(lab_servers, timeout=2, max_entries=2)
    assert client.cached("lab.test", "MX") is None  # never asked: nothing is sent either
    pending = asyncio.ensure_future(client.query("lab.test", "MX"))
    await asyncio.sleep(0)
    assert client.cached("lab.test", "MX") is None  # in flight: only query() may wait for it
    answer = await pending
    assert client.cached("LAB.test.", "mx") is answer and client.sent == 1
    await client.query("mail.lab.test", "A")
    assert client.cached("lab.test", "MX") is answer  # now the most recent of the two
    await client.query("smtp.lab.test", "A")
    assert client.cached("lab.test", "MX") is answer
    assert client.cached("mail.lab.test", "A") is None  # the least recently used went
    assert client.sent == 3


@pytest.mark.lab
async def test_an_idn_is_looked_up_by_its_idna_2008_a_labels(
    lab_servers: list[Nameserver],
) -> None:
    # IDNA 2003 (Python's codec) would ask for "fass.lab.test"; validation and lookups both use 2008.
    client = DnsClient(lab_servers, timeout=2)
    answer = await client.query("Faß.lab.test", "A")
    assert client.queries == [("xn--fa-hia.lab.test", "A")]
    assert answer.status is DnsStatus.NXDOMAIN
    snowman = await client.query("\u2603.lab.test", "A")  # allowed by IDNA 2003, not by 2008
    assert snowman.status is DnsStatus.ERROR


@pytest.mark.lab
async def test_srv_and_ptr_are_read_through_the_same_transport(
    lab_servers: list[Nameserver],
) -> None:
    # Discovery asks SRV and reverse DNS asks PTR: types outside the hand-read four must still
    # come back as records, not as "could not tell".
    client = DnsClient(lab_servers, timeout=2)
    srv = await client.query("_submission._tcp.lab.test", "SRV")
    assert srv.status is DnsStatus.OK, srv.error
    assert all(record.split()[-1].rstrip(".").endswith("lab.test") for record in srv.records())
    ptr = await client.query("1.0.0.127.in-addr.arpa", "PTR")
    assert ptr.status is DnsStatus.OK, ptr.error
    assert [r.rstrip(".") for r in ptr.records()] == ["mail.lab.test"]
    bogus = await client.query("lab.test", "NOT-A-TYPE")
    assert bogus.status is DnsStatus.ERROR and not bogus.definite
