"""The distributions carry what pyproject declares: a typed wheel, and an sdist that runs its own tests."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.distributions import REPO, Target, build

USER_CODE_GOOD = """\
import inboxcheck

schema: dict[str, object] = inboxcheck.report_schema()
version: str = inboxcheck.__version__
"""
# A wrong annotation mypy can only catch if it reads inboxcheck's own types.
USER_CODE_BAD = """\
import inboxcheck

version: int = inboxcheck.__version__
"""
NO_MARKER = "missing library stubs or py.typed marker"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(Target.WHEEL, tmp_path_factory.mktemp("wheel"))


def _clean_env() -> dict[str, str]:
    # Neither variable may point the child at this checkout instead of what the test built.
    return {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "MYPYPATH"}}


def test_wheel_ships_the_py_typed_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "inboxcheck/py.typed" in names
    assert (
        "Classifier: Typing :: Typed"
        in zipfile.Path(wheel, next(n for n in names if n.endswith("METADATA"))).read_text()
    )


def _mypy(tmp_path: Path, target_python: Path) -> str:
    """mypy --strict on the user files, resolving imports in ``target_python``'s site-packages only."""
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\ncache_dir = {tmp_path / 'mypy-cache'}\n", encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--python-executable",
            str(target_python),
            "good.py",
            "bad.py",
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_reads_the_installed_wheels_types(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    # Without the dependencies: a user's mypy needs inboxcheck's own annotations, not pydantic's.
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    (tmp_path / "good.py").write_text(USER_CODE_GOOD, encoding="utf-8")
    (tmp_path / "bad.py").write_text(USER_CODE_BAD, encoding="utf-8")

    output = _mypy(tmp_path, python)
    assert NO_MARKER not in output, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    assert len(errors) == 1, output
    assert errors[0].startswith("bad.py:3:") and "[assignment]" in errors[0], output

    # The marker is what makes the difference: without it, mypy refuses the installed package.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "inboxcheck" / "py.typed").unlink()
    assert NO_MARKER in _mypy(tmp_path, python)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(Target.SDIST, tmp_path_factory.mktemp("sdist"))


@pytest.fixture(scope="module")
def unpacked_sdist(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as archive:
        archive.extractall(destination, filter="data")
    (root,) = destination.iterdir()
    return root


def test_sdist_holds_what_the_tests_need_and_no_more(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    top = {name.partition("/")[0] for name in names}
    assert top >= {"inboxcheck", "presets", "tests", "fixtures", "lab", "scripts", ".ci", "constraints"}
    assert top.isdisjoint({"bench", ".venv", ".venv-lowest", ".git"})
    assert {"inboxcheck/py.typed", "inboxcheck/report.schema.json", "constraints/test.txt"} <= names
    assert not [name for name in names if "__pycache__" in name]


def _pytest_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``root`` with this environment's packages but not its editable inboxcheck.

    ``-S`` skips site-packages' .pth files, among them the one that puts this checkout on sys.path;
    pytest and the dependencies are added back as a plain directory.
    """
    purelib = sysconfig.get_paths()["purelib"]
    runner = f"import sys; sys.path.append({purelib!r}); import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-S", "-c", runner, "-p", "no:cacheprovider", *args],
        cwd=root,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


PROBE = """\
import inboxcheck
import lab


def test_where() -> None:
    print("FROM", inboxcheck.__file__, lab.__file__)
"""


@pytest.mark.slow
def test_sdist_runs_its_own_tests(unpacked_sdist: Path) -> None:
    # Collecting imports every test module, and with them lab/ and the package from the sdist.
    collected = _pytest_in(unpacked_sdist, "--collect-only", "-q")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert " collected" in collected.stdout.splitlines()[-1], collected.stdout[-3000:]

    # A quick subset that needs no lab; the probe tells where the code under test came from.
    (unpacked_sdist / "tests" / "test_zz_probe.py").write_text(PROBE, encoding="utf-8")
    ran = _pytest_in(
        unpacked_sdist,
        "-q",
        "-s",
        "tests/records/test_spf.py",
        "tests/records/test_dmarc.py",
        "tests/records/test_dkim.py",
        "tests/test_models.py",
        "tests/test_readme.py",
        "tests/test_zz_probe.py",
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    # -q prints the probe's line right after the progress dots.
    line = next(line for line in ran.stdout.splitlines() if "FROM " in line)
    package_file, lab_file = line.partition("FROM ")[2].split()
    assert Path(package_file).is_relative_to(unpacked_sdist)
    assert Path(lab_file).is_relative_to(unpacked_sdist)
    assert not Path(package_file).is_relative_to(REPO)


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (REPO / "constraints" / "test.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_constraints_pin_every_test_tool_within_the_extra_and_no_runtime_dependency() -> None:
    pins = _pins()
    for requirement in map(Requirement, _project()["optional-dependencies"]["test"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run scripts/pin-test-tools.sh"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
    runtime = {canonicalize_name(Requirement(item).name) for item in _project()["dependencies"]}
    assert runtime.isdisjoint(pins)
    assert "uv" in pins


def _floor(requirement: Requirement) -> Version:
    (floor,) = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return floor


@pytest.mark.skipif(
    os.environ.get("INBOXCHECK_TEST_DEPS") != "lowest",
    reason="only in the lowest run: scripts/test.sh --lowest",
)
def test_the_lowest_run_has_every_runtime_dependency_at_its_floor() -> None:
    installed = {
        requirement.name: Version(metadata.version(requirement.name))
        for requirement in map(Requirement, _project()["dependencies"])
    }
    floors = {
        requirement.name: _floor(requirement) for requirement in map(Requirement, _project()["dependencies"])
    }
    assert installed == floors
