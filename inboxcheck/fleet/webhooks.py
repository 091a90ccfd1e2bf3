"""Webhook deliveries: a signed POST for each change of verdict, retried on 5xx and timeouts.

The signature is Stripe's scheme: ``Inboxcheck-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` under INBOXCHECK_WEBHOOK_SECRET. A delivery is marked delivered the moment a 2xx
comes back, so a change is sent once unless an attempt failed; the event id lets a receiver drop a
repeat all the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck._errors import InboxcheckError
from inboxcheck.fleet._db import writing
from inboxcheck.fleet._schema import accounts, changes, deliveries
from inboxcheck.fleet.store import iso

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SECRET_ENV", "deliver", "sign", "verify", "webhook_secret"]

SECRET_ENV: Final = "INBOXCHECK_WEBHOOK_SECRET"
HEADER: Final = "Inboxcheck-Signature"
# In one run: attempts this far apart (seconds), then the delivery waits for the next run.
RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 4.0)
# Across runs: a delivery that failed this many attempts is given up (status "failed").
MAX_ATTEMPTS: Final = 12
_RETRYABLE: Final = frozenset({408, 425, 429})


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

    Each is attempted up to ``len(delays) + 1`` times now; one that still fails waits for a later run
    (its next attempt further off each time), and is given up after :data:`MAX_ATTEMPTS`.
    """
    query = (
        sa.select(
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
        .join(changes, changes.c.id == deliveries.c.change_id)
        .join(accounts, accounts.c.id == changes.c.account_id)
        .where(deliveries.c.status == "pending")
        .order_by(deliveries.c.id)
    )
    query = (
        query.where(deliveries.c.id.in_(only))
        if only is not None
        else query.where(deliveries.c.next_attempt_at <= clock())
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    results = await asyncio.gather(
        *(_deliver_one(engine, row, secret=secret, client=client, clock=clock, delays=delays) for row in rows)
    )
    delivered = sum(results)
    return delivered, len(results) - delivered


async def _deliver_one(
    engine: AsyncEngine,
    row: Any,
    *,
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
            response = await client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        else:
            status, error = response.status_code, None
            if 200 <= status < 300:
                await _mark(
                    engine,
                    row.id,
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
    status: str,
    attempts: int,
    code: int | None,
    error: str | None,
    now: float,
    next_at: float | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "last_status": code,
        "last_error": error,
    }
    if status == "delivered":
        values["delivered_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    async with writing(engine) as conn:
        await conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))


async def delivery_log(engine: AsyncEngine, *, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        sa.select(
            deliveries.c.url,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.last_status,
            deliveries.c.last_error,
            deliveries.c.delivered_at,
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
        }
        for r in rows
    ]
