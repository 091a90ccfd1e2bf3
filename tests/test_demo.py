"""The README's main command, run for real: lab, API double, connect, created inbox, all stopped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_readme_demo_creates_an_inbox_from_the_lab() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("INBOXCHECK_")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Verdict: PASS" in out
    for check in ("SMTP login", "IMAP login", "SPF record", "DKIM keys", "DMARC policy"):
        assert check in out
    assert "Gate: PASSED" in out
    assert "Created inbox" in out and "status PENDING" in out
    assert "recorded 1 create call(s)" in out
    assert "smtp_password" not in out.split("Created inbox")[1]
