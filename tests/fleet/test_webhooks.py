"""Webhook deliveries to a receiver on loopback: signed, retried on 5xx and timeouts, never twice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from inboxcheck._models import Account
from inboxcheck.fleet import store
from inboxcheck.fleet.webhooks import (
    SECRET_ENV,
    WebhookSecretError,
    deliver,
    delivery_log,
    sign,
    verify,
    webhook_secret,
)
from tests.fleet.receiver import SECRET, Receiver
from tests.fleet.test_store import KEY, NOW, _failed, _record, _report
from tests.helpers import CANARY, batch_user


def test_the_signature_is_an_hmac_of_time_and_body_and_verifies() -> None:
    header = sign(b'{"a":1}', secret=b"s", timestamp=1700000000)
    mac = hmac.new(b"s", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={mac}"
    assert verify(header, b'{"a":1}', secret=b"s", now=1700000100)
    assert not verify(header, b'{"a":2}', secret=b"s", now=1700000100)
    assert not verify(header, b'{"a":1}', secret=b"t", now=1700000100)
    assert not verify(header, b'{"a":1}', secret=b"s", now=1700009999)  # too old: a replay
    assert not verify("v1=abc", b"", secret=b"s", now=0)


def test_webhooks_need_their_secret() -> None:
    with pytest.raises(WebhookSecretError, match=SECRET_ENV):
        webhook_secret({})
    assert webhook_secret({SECRET_ENV: "x"}) == b"x"


async def _broken(engine: Any, url: str) -> tuple[int, ...]:
    account = Account.model_validate(batch_user(0))
    await store.add_accounts(engine, [account], key=KEY, interval=3600, now=NOW)
    assert await store.add_webhook(engine, "http://127.0.0.1:9/hook", now=NOW)  # nothing listens there
    good = await _report(account)
    await _record(engine, 1, account, good, NOW)
    await _record(engine, 1, account, _failed(good), NOW + 1)
    recorded = await store.record_report(
        engine,
        account_id=1,
        round_id=None,
        report=_failed(good),
        scrub=str,
        now=NOW + 300,
        webhook_urls=[url],
    )
    assert recorded is not None and recorded.change is not None
    return recorded.deliveries


async def test_a_5xx_is_retried_and_a_delivered_change_is_never_sent_again(
    engine: Any, receiver: Receiver
) -> None:
    deliveries = await _broken(engine, receiver.url)
    assert len(deliveries) == 2  # the stored URL and this run's
    receiver.statuses = [500, 503]
    async with httpx.AsyncClient() as client:
        sent = await deliver(
            engine, secret=SECRET.encode(), client=client, clock=lambda: NOW + 400, delays=(0, 0, 0)
        )
        assert sent == (1, 1)  # the receiver's, after two 5xx; the closed port of _record's URL is pending
        again = await deliver(
            engine, secret=SECRET.encode(), client=client, clock=lambda: NOW + 401, delays=(0,)
        )
    assert again == (0, 0)  # the failed one waits for its backoff; the delivered one is done
    events = receiver.events(now=NOW + 400)
    assert len(events) == 3 and {e["id"] for e in events} == {events[0]["id"]}
    assert events[0]["type"] == "inbox.broken" and events[0]["data"]["to"] == "broken"
    assert all(CANARY not in body.decode() for _, body in receiver.posts)
    log = {row["url"]: row for row in await delivery_log(engine)}
    assert log[receiver.url]["status"] == "delivered" and log[receiver.url]["attempts"] == 3
    assert log["http://127.0.0.1:9/hook"]["status"] == "pending"


async def test_a_4xx_is_not_retried_and_a_timeout_is(engine: Any, receiver: Receiver) -> None:
    await _broken(engine, receiver.url)
    receiver.statuses = [400]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        await store.add_webhook(engine, url, now=NOW)
        account = Account.model_validate(batch_user(0))
        good = await _report(account)
        await _record(engine, 1, account, good, NOW + 500)  # recovered: to the stored URL too
        async with httpx.AsyncClient(timeout=0.5) as client:
            await deliver(engine, secret=SECRET.encode(), client=client, clock=lambda: NOW + 600, delays=(0,))
    log = await delivery_log(engine)
    by = {(row["event"], row["url"]): row for row in log}
    assert by[("inbox.broken", receiver.url)]["status"] == "failed"
    assert by[("inbox.broken", receiver.url)]["attempts"] == 1
    assert by[("inbox.recovered", url)]["status"] == "pending"
    assert by[("inbox.recovered", url)]["attempts"] == 2
    assert "Timeout" in (by[("inbox.recovered", url)]["last_error"] or "")


async def _pending(engine: Any, receiver: Receiver, *, accounts: int, urls: int) -> int:
    """``accounts`` accounts broken at once, each change to ``urls`` URLs of the receiver (one path
    each): that many pending deliveries, due now."""
    batch = [Account.model_validate(batch_user(i)) for i in range(accounts)]
    await store.add_accounts(engine, batch, key=KEY, interval=3600, now=NOW)
    targets = [f"{receiver.url}/{n}" for n in range(urls)]
    for account_id, account in enumerate(batch, start=1):
        good = await _report(account)
        await _record(engine, account_id, account, good, NOW)
        await _record(engine, account_id, account, _failed(good), NOW + 1)
        recorded = await store.record_report(
            engine,
            account_id=account_id,
            round_id=None,
            report=_failed(good),
            scrub=str,
            now=NOW + 300,
            webhook_urls=targets,
        )
        assert recorded is not None and len(recorded.deliveries) == urls
    return accounts * urls


async def _deliveries(engine: Any) -> list[Any]:
    import sqlalchemy as sa

    from inboxcheck.fleet._schema import deliveries

    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(deliveries).order_by(deliveries.c.id))).all())


async def test_two_sweepers_at_once_never_send_one_delivery_twice(
    engine: Any, fleet_db: str, receiver: Receiver
) -> None:
    from inboxcheck.fleet._db import connect

    count = await _pending(engine, receiver, accounts=6, urls=10)  # more than one claim of 50
    other = await connect(fleet_db)
    try:
        async with httpx.AsyncClient() as one, httpx.AsyncClient() as two:
            # Four sweeps on two engines (two processes' pools), all at once.
            sent = await asyncio.gather(
                *(
                    deliver(e, secret=SECRET.encode(), client=c, clock=lambda: NOW + 400, delays=(0,))
                    for e, c in ((engine, one), (other, two), (engine, two), (other, one))
                )
            )
    finally:
        await other.dispose()
    assert sum(done for done, _ in sent) == count and sum(failed for _, failed in sent) == 0, sent
    per = Counter(
        (path, event["id"])
        for path, event in zip(receiver.paths, receiver.events(now=NOW + 400), strict=True)
    )
    assert len(per) == count and set(per.values()) == {1}, per.most_common(3)
    rows = await _deliveries(engine)
    assert len(rows) == count
    assert {(r.status, r.claimed_by, r.claimed_until) for r in rows} == {("delivered", None, None)}


async def test_a_live_claim_is_left_to_its_sender_and_an_expired_one_is_taken_again(
    engine: Any, receiver: Receiver
) -> None:
    from inboxcheck.fleet.webhooks import claim

    await _pending(engine, receiver, accounts=1, urls=1)
    # A sender claims it for an hour, and is killed before it sends anything.
    [held] = await claim(engine, sender="killed pid 1 ab", lease=3600, due=NOW + 400)
    async with httpx.AsyncClient() as client:

        async def sweep() -> tuple[int, int]:
            return await deliver(engine, secret=SECRET.encode(), client=client, clock=lambda: NOW + 400)

        # Its claim holds on the database's clock (this sender's clock, weeks ahead, is not read).
        assert await sweep() == (0, 0) and receiver.posts == []
        [row] = await _deliveries(engine)
        assert (row.status, row.claimed_by) == ("pending", "killed pid 1 ab")
        # Claimed again for half a second by a sender that dies too: once that has run out, the
        # next sweep takes it and sends it, once.
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL WHERE id = :id"),
                {"id": held.id},
            )
        assert await claim(engine, sender="killed pid 2 cd", lease=0.5, due=NOW + 400)
        deadline = time.monotonic() + 60
        while (sent := await sweep()) == (0, 0):
            assert time.monotonic() < deadline, "the expired claim was never taken again"
            await asyncio.sleep(0.1)
        assert sent == (1, 0)
        assert await sweep() == (0, 0)
    [event] = receiver.events(now=NOW + 400)
    assert event["type"] == "inbox.broken"
    [row] = await _deliveries(engine)
    assert (row.status, row.attempts, row.claimed_by, row.claimed_until) == ("delivered", 1, None, None)


async def test_the_log_shows_who_holds_a_pending_delivery_and_until_when(
    engine: Any, receiver: Receiver, fleet_db: str
) -> None:
    import subprocess
    import sys

    from inboxcheck.fleet.webhooks import claim

    await _pending(engine, receiver, accounts=2, urls=1)
    first, second = (row.id for row in await _deliveries(engine))
    [held] = await claim(engine, sender="mail-7 pid 41 ab12", lease=3600, only=[first])
    # A sender killed long ago: its claim ran out (on the database's clock), to be taken again.
    [lapsed] = await claim(engine, sender="gone\x1b[31m pid 9 cd34", lease=-60, only=[second])
    log = {row["email_address"]: row for row in await delivery_log(engine)}
    live, dead = log[held.address], log[lapsed.address]
    assert (live["status"], live["claimed_by"], live["claim_expired"]) == (
        "pending",
        "mail-7 pid 41 ab12",
        False,
    )
    assert (dead["claimed_by"], dead["claim_expired"]) == ("gone\x1b[31m pid 9 cd34", True)
    for row in (live, dead):
        assert row["claimed_until"].endswith("Z") and row["next_attempt_at"].endswith("Z")
    assert live["claimed_until"] > dead["claimed_until"]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "inboxcheck", "fleet", "webhook", "log", "--db", fleet_db, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    assert [json.loads(line) for line in cli().splitlines()] == await delivery_log(engine)
    text = {line.split()[1]: line for line in cli("--format", "text").splitlines()}
    assert text[held.address].endswith(f"; claimed by mail-7 pid 41 ab12 until {live['claimed_until']}")
    assert "claim ran out by gone" in text[lapsed.address]
    assert "\x1b" not in "".join(text.values())  # outside text escaped before a terminal
    assert f"next {live['next_attempt_at']}" in text[held.address]
