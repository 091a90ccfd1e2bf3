"""Shared test data: valid payloads to mutate, and a canary password that must never surface."""

from __future__ import annotations

from typing import Any

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
