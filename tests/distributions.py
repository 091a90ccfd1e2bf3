"""Builds inboxcheck's wheel or sdist from this checkout, for the tests of what they carry."""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Target(StrEnum):
    WHEEL = "wheel"
    SDIST = "sdist"


def build(target: Target, out_dir: Path) -> Path:
    """Build one distribution into ``out_dir`` with the hatchling of the test tools; return its path.

    hatchling is called directly, not through pip or an isolated build, so the build is offline and
    uses the pinned hatchling (constraints/test.txt) that the build-system table also allows.
    """
    command = [sys.executable, "-m", "hatchling", "build", "--target", target.value, "-d", str(out_dir)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    pattern = "inboxcheck-*.whl" if target is Target.WHEEL else "inboxcheck-*.tar.gz"
    built = list(out_dir.glob(pattern))
    assert len(built) == 1, built
    return built[0]
