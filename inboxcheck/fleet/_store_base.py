"""What the fleet store's parts share: times as text, addresses compared, report bodies packed."""

from __future__ import annotations

import functools
import json
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck._errors import InboxcheckError
from inboxcheck.fleet._schema import reports

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

_FIELDS: Final = ("smtp_password", "imap_password")
DAY: Final = 86_400.0
#: The queue of the fleet\'s check jobs and of its scheduler (Procrastinate queue names; fleet/queue.py
#: imports Procrastinate, the store must not).
QUEUE_NAME: Final = "inboxcheck-fleet"
SCHEDULE_QUEUE_NAME: Final = "inboxcheck-fleet-schedule"


class UnknownAccountError(InboxcheckError):
    def __init__(self, address: str) -> None:
        super().__init__(f"{address}: no such account in the fleet (see `inboxcheck fleet list`)")


def iso(moment: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC to the second (``2026-12-07T08:00:00Z``).

    ``status`` writes two per account: the date part is remembered per day and the time of day is
    arithmetic, ten times faster than a datetime per call.
    """
    if moment is None:
        return None
    day, seconds = divmod(int(moment), 86_400)
    hours, rest = divmod(seconds, 3600)
    return f"{_date_of_day(day)}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


@functools.lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def _normal(address: str) -> str:
    return address.strip().lower()


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The primary key an INSERT of one row made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def pack(report_json: str) -> bytes:
    return zlib.compress(report_json.encode(), 6)


def unpack(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(zlib.decompress(body))
    return data


async def _body(conn: AsyncConnection, report_id: int | None) -> dict[str, Any] | None:
    if report_id is None:
        return None
    body = (
        await conn.execute(sa.select(reports.c.body).where(reports.c.id == report_id))
    ).scalar_one_or_none()
    return unpack(body) if body is not None else None


def status_entry(
    address: str,
    state: str,
    since: float | None,
    checked: float | None,
    code: str | None,
    message: str | None,
) -> str:
    """One account's entry of ``fleet status --format json``, as stored in ``accounts.status_json``."""
    return json.dumps(
        {
            "email_address": address,
            "verdict": state,
            "since": iso(since),
            "checked_at": iso(checked),
            "cause": {"code": code, "message": message} if code is not None else None,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
