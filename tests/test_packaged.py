"""Packaged data (presets, reply rules, blocklists, diagnosis weights) is read one way (_packaged.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import inboxcheck
from inboxcheck._errors import InboxcheckError, PresetError
from inboxcheck._packaged import packaged, packaged_files, read_toml

PACKAGE = Path(inboxcheck.__file__).parent
# Reads JSON schema files, which inboxcheck/cli (issue 22) regroups; not TOML data.
_OTHER_READERS = {"_schema.py"}


def test_only_the_loader_parses_toml_or_opens_package_resources() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in {"_packaged.py", *_OTHER_READERS}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name in ("tomllib", "importlib.resources") for name in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_every_packaged_data_file_reads() -> None:
    for file in [*packaged_files("knowledge"), packaged("blocklists.toml"), packaged("diagnosis.toml")]:
        assert read_toml(file), file.name


def test_a_broken_file_is_an_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule", encoding="utf-8")
    with pytest.raises(PresetError, match=r"bad\.toml: not valid TOML"):
        read_toml(bad, error=PresetError)
    with pytest.raises(InboxcheckError, match=r"missing\.toml: cannot read the preset"):
        read_toml(tmp_path / "missing.toml", what="the preset")
