"""Webhook deliveries: a signed POST for each change of verdict, retried on 5xx and timeouts.

The signature is Stripe's scheme: ``Inboxcheck-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` under INBOXCHECK_WEBHOOK_SECRET. A delivery is marked delivered the moment a 2xx
comes back, so a change is sent once unless an attempt failed; the event id lets a receiver drop a
repeat all the same.

Every sender (``fleet run``, a queue worker after its check, the sweeps of ``fleet worker`` and
``fleet watch --queue``) goes through :func:`deliver`, which claims each delivery before sending it:
``claimed_by`` and ``claimed_until`` on the database's clock, taken in one statement that skips the
deliveries another live claim holds. No two processes send one delivery at once; a sender killed
mid-send leaves a claim that runs out (:func:`claim_lease`), and the next sweep sends the delivery
again. Delivery is therefore at least once: a sender killed after the receiver took the POST, but
before the 2xx was recorded, has it sent again with the same event id (the receiver's dedupe key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck._errors import InboxcheckError
from inboxcheck.fleet._db import writing
from inboxcheck.fleet._lost_db import lost_database, reason, shown
from inboxcheck.fleet._schema import accounts, changes, deliveries
from inboxcheck.fleet.store import iso

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

_log = logging.getLogger("inboxcheck.fleet.webhooks")
__all__ = [
    "SECRET_ENV",
    "claim",
    "deliver",
    "send_pending",
    "sign",
    "sweep",
    "sweep_once",
    "verify",
    "webhook_secret",
]

SECRET_ENV: Final = "INBOXCHECK_WEBHOOK_SECRET"
HEADER: Final = "Inboxcheck-Signature"
# In one run: attempts this far apart (seconds), then the delivery waits for the next run.
RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 4.0)
# Across runs: a delivery that failed this many attempts is given up (status "failed").
MAX_ATTEMPTS: Final = 12
_RETRYABLE: Final = frozenset({408, 425, 429})
# Seconds one attempt may take, whatever the HTTP client's own timeouts.
ATTEMPT_TIMEOUT: Final = 15.0
# A claim outlasts the longest its sender can take by this many seconds (see claim_lease).
CLAIM_MARGIN: Final = 30.0
# Deliveries one sender claims and sends at once (within an HTTP client's pool of 100 connections).
CLAIM_BATCH: Final = 50


class WebhookSecretError(InboxcheckError):
    pass


def webhook_secret(env: dict[str, str] | None = None) -> bytes:
    secret = (env if env is not None else os.environ).get(SECRET_ENV)
    if not secret:
        raise WebhookSecretError(
            f"webhooks are signed: set {SECRET_ENV} to the secret the receiver checks the signature with"
        )
    return secret.encode()


def sign(body: bytes, *, secret: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(header: str, body: bytes, *, secret: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` under ``secret``, made within ``tolerance`` seconds."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(body, secret=secret, timestamp=timestamp).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def event_body(row: Any) -> bytes:
    """The event as sent: its id, type, time, the account's address and the change. No credential:
    the change is made of the scrubbed reports' codes and evidence."""
    diff = json.loads(row.diff)
    return json.dumps(
        {
            "id": row.event_id,
            "type": row.event_type,
            "created": iso(row.at),
            "data": {
                "email_address": row.address,
                "from": row.from_state,
                "to": row.to_state,
                "at": iso(row.at),
                **diff,
            },
        },
        separators=(",", ":"),
    ).encode()


async def deliver(
    engine: AsyncEngine,
    *,
    secret: bytes,
    client: httpx.AsyncClient,
    clock: Callable[[], float],
    only: Sequence[int] | None = None,
    delays: Sequence[float] = RETRY_DELAYS,
) -> tuple[int, int]:
    """Send every pending delivery that is due (or only the deliveries ``only``); (delivered, failed).

    Each is claimed first (:func:`claim`): a delivery another sender holds is left to it, so no two
    processes send one at once. Each is attempted up to ``len(delays) + 1`` times now; one that
    still fails waits for a later run or sweep (its next attempt further off each time), and is
    given up after :data:`MAX_ATTEMPTS`.
    """
    sender = sender_id()
    lease = claim_lease(delays)
    sent: list[bool] = []

    async def send(rows: list[Any]) -> None:
        sent.extend(
            await asyncio.gather(
                *(
                    _deliver_one(
                        engine, row, sender=sender, secret=secret, client=client, clock=clock, delays=delays
                    )
                    for row in rows
                )
            )
        )

    if only is not None:
        # Those ids, each claimed once: one that failed is pending again, but not due yet.
        for start in range(0, len(only), CLAIM_BATCH):
            ids = only[start : start + CLAIM_BATCH]
            await send(await claim(engine, sender=sender, lease=lease, only=ids))
    else:
        # The due ones, a batch at a time, until none is left to claim (one that failed is no
        # longer due; one claimed by another sender is left to it).
        while rows := await claim(engine, sender=sender, lease=lease, due=clock(), limit=CLAIM_BATCH):
            await send(rows)
    delivered = sum(sent)
    return delivered, len(sent) - delivered


def sender_id() -> str:
    """Who claims a delivery: this host and process, and a token of the call (two calls of one
    process each hold their own claims)."""
    return f"{socket.gethostname()[:48]} pid {os.getpid()} {secrets.token_hex(4)}"


def claim_lease(delays: Sequence[float] = RETRY_DELAYS) -> float:
    """Seconds a claim lasts: every attempt and every wait of its sender, and a margin. A sender
    alive is done before its claim runs out; a sender killed leaves its deliveries to be taken
    again that long after it claimed them."""
    return (len(delays) + 1) * ATTEMPT_TIMEOUT + sum(delays) + CLAIM_MARGIN


def database_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's clock in Unix seconds: claims are compared on one clock, whatever the clocks
    of the machines that send."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


_DETAILS: Final = (
    deliveries.c.id,
    deliveries.c.url,
    deliveries.c.attempts,
    changes.c.event_id,
    changes.c.event_type,
    changes.c.at,
    changes.c.diff,
    changes.c.from_state,
    changes.c.to_state,
    accounts.c.address,
)


async def claim(
    engine: AsyncEngine,
    *,
    sender: str,
    lease: float,
    only: Sequence[int] | None = None,
    due: float | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Claim for ``sender``, for ``lease`` seconds, the pending deliveries no live claim holds:
    those ``only``, else those whose next attempt is at or before ``due``; the claimed ones, each
    with its event. One statement (PostgreSQL: the rows locked with SKIP LOCKED, so two senders at
    once claim different ones; SQLite: one writer at a time)."""
    now = database_now(engine.dialect.name)
    free = sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now)
    picked = deliveries.alias("picked")
    pick = sa.select(picked.c.id).where(
        picked.c.status == "pending",
        sa.or_(picked.c.claimed_until.is_(None), picked.c.claimed_until < now),
    )
    if only is not None:
        pick = pick.where(picked.c.id.in_(only))
    else:
        assert due is not None
        pick = pick.where(picked.c.next_attempt_at <= due)
    pick = pick.order_by(picked.c.id)
    if limit is not None:
        pick = pick.limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    taking = (
        deliveries.update()
        # The claim is checked again on the row itself (PostgreSQL re-reads a row it waited for).
        .where(deliveries.c.id.in_(pick), deliveries.c.status == "pending", free)
        .values(claimed_by=sender, claimed_until=now + lease)
        .returning(deliveries.c.id)
    )
    async with writing(engine) as conn:
        ids = [row[0] for row in await conn.execute(taking)]
        if not ids:
            return []
        query = (
            sa.select(*_DETAILS)
            .join(changes, changes.c.id == deliveries.c.change_id)
            .join(accounts, accounts.c.id == changes.c.account_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.id)
        )
        return list((await conn.execute(query)).all())


async def _deliver_one(
    engine: AsyncEngine,
    row: Any,
    *,
    sender: str,
    secret: bytes,
    client: httpx.AsyncClient,
    clock: Callable[[], float],
    delays: Sequence[float],
) -> bool:
    import httpx

    body = event_body(row)
    attempts = row.attempts
    status: int | None = None
    error: str | None = None
    for delay in (*delays, None):
        attempts += 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "inboxcheck-fleet",
            HEADER: sign(body, secret=secret, timestamp=int(clock())),
        }
        try:
            # Bounded whatever the client's own timeouts (a receiver trickling its answer): the
            # sender is done before its claim runs out.
            response = await asyncio.wait_for(
                client.post(row.url, content=body, headers=headers), timeout=ATTEMPT_TIMEOUT
            )
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        except TimeoutError:
            status, error = None, f"no answer within {ATTEMPT_TIMEOUT:g} s"
        else:
            status, error = response.status_code, None
            if 200 <= status < 300:
                await _mark(
                    engine,
                    row.id,
                    sender=sender,
                    status="delivered",
                    attempts=attempts,
                    code=status,
                    error=None,
                    now=clock(),
                )
                return True
            error = f"HTTP {status}"
            if status < 500 and status not in _RETRYABLE:
                break  # the receiver refused it: sending it again would not help
        if delay is None:
            break
        await asyncio.sleep(delay)
    retry = status is None or status >= 500 or status in _RETRYABLE
    final = "pending" if retry and attempts < MAX_ATTEMPTS else "failed"
    await _mark(
        engine,
        row.id,
        sender=sender,
        status=final,
        attempts=attempts,
        code=status,
        error=error,
        now=clock(),
        next_at=clock() + min(60 * 2 ** min(attempts, 10), 6 * 3600),
    )
    return False


async def _mark(
    engine: AsyncEngine,
    delivery_id: int,
    *,
    sender: str,
    status: str,
    attempts: int,
    code: int | None,
    error: str | None,
    now: float,
    next_at: float | None = None,
) -> None:
    """Record an outcome and let the claim go. A 2xx is recorded whoever holds the claim (the
    receiver has the event); a failure only while this sender still holds it (a claim that ran
    out belongs to the sender that took it next)."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "last_status": code,
        "last_error": error,
        "claimed_by": None,
        "claimed_until": None,
    }
    if status == "delivered":
        values["delivered_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    update = deliveries.update().where(deliveries.c.id == delivery_id)
    if status != "delivered":
        update = update.where(deliveries.c.claimed_by == sender)
    async with writing(engine) as conn:
        await conn.execute(update.values(**values))


async def delivery_log(engine: AsyncEngine, *, limit: int = 100) -> list[dict[str, Any]]:
    """The deliveries, newest first; a pending one with its next attempt and, while a sender holds
    it (:func:`claim`), who (``claimed_by``: host, pid, token of the call) and until when: a claim
    that ran out (its sender died) is shown with ``claim_expired`` true, to be taken again."""
    now = database_now(engine.dialect.name)
    query = (
        sa.select(
            deliveries.c.url,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.last_status,
            deliveries.c.last_error,
            deliveries.c.delivered_at,
            deliveries.c.next_attempt_at,
            deliveries.c.claimed_by,
            deliveries.c.claimed_until,
            (deliveries.c.claimed_until < now).label("claim_expired"),
            changes.c.event_id,
            changes.c.event_type,
            accounts.c.address,
        )
        .join(changes, changes.c.id == deliveries.c.change_id)
        .join(accounts, accounts.c.id == changes.c.account_id)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "event_id": r.event_id,
            "event": r.event_type,
            "email_address": r.address,
            "url": r.url,
            "status": r.status,
            "attempts": r.attempts,
            "last_status": r.last_status,
            "last_error": r.last_error,
            "delivered_at": iso(r.delivered_at),
            "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None,
            "claimed_by": r.claimed_by,
            "claimed_until": iso(r.claimed_until),
            "claim_expired": None if r.claimed_until is None else bool(r.claim_expired),
        }
        for r in rows
    ]


async def send_pending(
    engine: AsyncEngine, secret: bytes, *, clock: Callable[[], float], only: Sequence[int] | None = None
) -> tuple[int, int]:
    """Claim and send the pending deliveries (``only`` those ids), with a client of its own:
    (delivered, failed)."""
    import httpx

    async with httpx.AsyncClient(timeout=10.0) as client:
        return await deliver(engine, secret=secret, client=client, clock=clock, only=only)


async def sweep(
    engine: AsyncEngine, secret: bytes, *, clock: Callable[[], float] = time.time
) -> tuple[int, int]:
    """Send the webhook deliveries left pending whose next attempt is due (their sender killed
    mid-send, a receiver that failed): what `fleet run` does at its start, for a queue-only fleet;
    (delivered, failed). Any number of workers and watchers may sweep at once: each delivery is
    claimed by one sender (``webhooks.claim``), and one left by a killed sender is taken again
    once its claim has run out. A line on stderr when it sent any."""
    delivered, failed = await send_pending(engine, secret, clock=clock)
    if delivered or failed:
        _log.warning("webhook deliveries left pending: %d delivered, %d to retry later", delivered, failed)
    return delivered, failed


async def sweep_once(engine: AsyncEngine, secret: bytes, *, clock: Callable[[], float]) -> None:
    """:func:`sweep`, whose failure waits for the next turn (said on stderr unless the database
    is away: the worker or watcher says that itself)."""
    try:
        await sweep(engine, secret, clock=clock)
    except Exception as exc:  # noqa: BLE001 - the next sweep tries again
        if not lost_database(exc):
            _log.warning("webhook deliveries not swept: %s", shown(reason(exc)))
