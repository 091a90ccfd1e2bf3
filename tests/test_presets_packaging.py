"""The presets are found from a source checkout, an editable install and an installed wheel.

A wheel carries them inside the package as ``inboxcheck/_data/presets`` (pyproject force-includes
``presets/`` there); a checkout or an editable install reads the live ``presets/`` beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import inboxcheck._presets as presets_module
from inboxcheck._presets import load_presets, presets_dir
from tests.distributions import REPO, Target, build

PRESET_NAMES = sorted(path.name for path in (REPO / "presets").glob("*.toml"))

PROBE = (
    "import inboxcheck._presets as p\n"
    "print(p.__file__)\n"
    "print(p.presets_dir())\n"
    "print(len(p.load_presets()))\n"
)


def _probe(*, pythonpath: Path | None, cwd: Path, prelude: str = "") -> tuple[Path, Path, int]:
    """Import inboxcheck in a fresh interpreter; return its module file, presets dir and count."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", prelude + PROBE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    module_file, directory, count = result.stdout.strip().splitlines()[-3:]
    return Path(module_file).resolve(), Path(directory).resolve(), int(count)


def test_source_checkout_reads_the_repository_presets() -> None:
    assert Path(presets_module.__file__).resolve().is_relative_to(REPO / "inboxcheck")
    assert presets_dir().resolve() == (REPO / "presets").resolve()
    assert len(load_presets(presets_dir())) == len(PRESET_NAMES)


def test_source_checkout_from_another_directory(tmp_path: Path) -> None:
    module_file, directory, count = _probe(pythonpath=REPO, cwd=tmp_path)
    assert module_file.is_relative_to(REPO / "inboxcheck")
    assert directory == (REPO / "presets").resolve()
    assert count == len(PRESET_NAMES)


def test_editable_install_reads_live_presets_not_a_stale_copy(tmp_path: Path) -> None:
    # An editable install from hatchling puts a .pth naming the repository in site-packages and also
    # copies the force-included presets to site-packages/inboxcheck/_data/presets, a snapshot that
    # goes stale as soon as a preset is edited. The package itself comes from the repository, so the
    # loader must read the repository's presets, not that snapshot.
    site = tmp_path / "site-packages"
    stale = site / "inboxcheck" / "_data" / "presets"
    stale.mkdir(parents=True)
    (stale / "google-workspace.toml").write_bytes((REPO / "presets" / "google-workspace.toml").read_bytes())
    (site / "_inboxcheck.pth").write_text(f"{REPO}\n", encoding="utf-8")
    prelude = f"import site\nsite.addsitedir({str(site)!r})\n"
    module_file, directory, count = _probe(pythonpath=None, cwd=tmp_path, prelude=prelude)
    assert module_file.is_relative_to(REPO / "inboxcheck")
    assert directory == (REPO / "presets").resolve()
    assert count == len(PRESET_NAMES) > 1


@pytest.mark.slow
def test_wheel_carries_and_finds_the_presets(tmp_path: Path) -> None:
    built = build(Target.WHEEL, tmp_path / "dist")

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built) as wheel:
        names = set(wheel.namelist())
        wheel.extractall(unpacked)
    assert "inboxcheck/_data/presets/google-workspace.toml" in names
    assert "inboxcheck/parsed-data.json" in names  # the shipped TOML, parsed ahead (_packaged.py)
    bundled = sorted(
        name.removeprefix("inboxcheck/_data/presets/")
        for name in names
        if name.startswith("inboxcheck/_data/presets/")
    )
    assert bundled == PRESET_NAMES

    # cwd is tmp_path and PYTHONPATH only the unpacked wheel, so the checkout is not importable.
    module_file, directory, count = _probe(pythonpath=unpacked, cwd=tmp_path)
    assert module_file.is_relative_to(unpacked.resolve())
    assert directory.is_relative_to(unpacked.resolve())
    assert directory == (unpacked / "inboxcheck" / "_data" / "presets").resolve()
    assert count == len(PRESET_NAMES)
