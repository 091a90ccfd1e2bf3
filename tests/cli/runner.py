"""Running the CLI in tests: click's runner, an account file, the words of an output."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from inboxcheck.cli import cli

OFFLINE = ["--only", "account"]


def run(args: list[str], *, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, env=env or {}, catch_exceptions=False)


def words(text: str) -> list[str]:
    """The words of an output, but for the run's own duration ("in 0.1 s"), which differs between
    two runs of the same check."""
    return re.sub(r"\bin\s+\d+\.\d+\s+s\b", "in N s", text).split()


def account_file(tmp_path: Path, payload: Any, name: str = "account.json") -> str:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return str(path)
