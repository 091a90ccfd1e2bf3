"""Shared test data: valid payloads to mutate, and a canary password that must never surface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inboxcheck._check import CheckSpec

CANARY = "Canary-pw-7Qx!zz"


def google_payload(**changes: Any) -> dict[str, Any]:
    """The platform's own example payload, with a Google-shaped app password."""
    payload: dict[str, Any] = {
        "email_address": "john@company.com",
        "display_name": "John Smith",
        "inbox_type": "GOOGLE_WORKSPACE",
        "daily_limit": 25,
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "smtp_username": "john@company.com",
        "smtp_password": "abcdefghijklmnop",
        "smtp_use_tls": True,
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "imap_username": "john@company.com",
        "imap_password": "abcdefghijklmnop",
        "imap_use_ssl": True,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def custom_payload(**changes: Any) -> dict[str, Any]:
    """A custom-host account with nothing wrong offline."""
    payload = google_payload(
        email_address="sam@example.test",
        display_name="Sam Lee, Example",
        inbox_type="CUSTOM_SMTP",
        smtp_host="mail.example.test",
        smtp_username="sam@example.test",
        smtp_password=CANARY,
        imap_host="mail.example.test",
        imap_username="sam@example.test",
        imap_password=CANARY,
    )
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def batch_user(i: int, **changes: Any) -> dict[str, Any]:
    """The i-th account of a batch: a custom-host account with its own address."""
    address = f"user{i}@example.test"
    return custom_payload(email_address=address, smtp_username=address, imap_username=address, **changes)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """A batch file at ``path``: one line per row (a payload, or a string written as it is)."""
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def unreachable_for(down: set[str]) -> list[CheckSpec]:
    """One offline check that could not tell (a server refused) for the addresses in ``down``, as
    long as they are in it: clear it and a rerun passes."""
    from inboxcheck._check import CheckContext, CheckSpec, Outcome
    from inboxcheck._models import Severity
    from inboxcheck._options import Family

    async def flaky(ctx: CheckContext) -> Outcome:
        out = Outcome(summary="reached the server")
        if ctx.account.email_address in down:
            out.add("smtp.connect.refused", Severity.ERROR, "down")
        return out

    return [CheckSpec("test.server", "Server", Family.ACCOUNT, flaky)]
