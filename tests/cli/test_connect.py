"""inboxcheck connect: its text form (the create call itself is tested in tests/test_connect.py)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.runner import OFFLINE, account_file, run
from tests.helpers import custom_payload, google_payload


def test_connect_gate_line_wraps_to_columns(tmp_path: Path) -> None:
    payload = google_payload(imap_port=143, smtp_username="someone.else@company.com", daily_limit=10000)
    args = ["connect", account_file(tmp_path, payload), *OFFLINE, "--dry-run"]
    result = run(args, env={"COLUMNS": "60"})
    assert result.exit_code == 1, result.output
    assert "Gate: BLOCKED by" in result.stdout
    assert all(len(line) <= 60 for line in result.stdout.splitlines()), result.stdout


def test_connect_dry_run_line_wraps_to_columns(tmp_path: Path) -> None:
    args = ["connect", account_file(tmp_path, custom_payload()), *OFFLINE, "--dry-run"]
    result = run(args, env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert "Dry run: would POST" in result.stdout
    assert all(len(line) <= 60 for line in result.stdout.splitlines()), result.stdout
