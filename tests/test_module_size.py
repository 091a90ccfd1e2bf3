"""No module of the package, the lab or the benchmarks is over 600 lines: a module that outgrows it
is split by concern into sibling modules (ARCHITECTURE.md says where each part went)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
CHECKED = ("inboxcheck", "lab", "bench")


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("folder", CHECKED)
def test_no_module_is_over_600_lines(folder: str) -> None:
    modules = sorted((ROOT / folder).rglob("*.py"))
    assert modules, f"no modules found under {folder}/"
    too_long = {
        str(path.relative_to(ROOT)): lines for path in modules if (lines := _line_count(path)) > MAX_LINES
    }
    assert too_long == {}
