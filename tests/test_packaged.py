"""Packaged data (presets, reply rules, blocklists, diagnosis weights) is read one way (_packaged.py)."""

from __future__ import annotations

import ast
import datetime
import json
import tomllib
from pathlib import Path

import pytest

import inboxcheck
from inboxcheck._errors import InboxcheckError, PresetError
from inboxcheck._packaged import (
    PARSED_AHEAD,
    _digest,
    _parsed_ahead,
    _shipped_toml,
    packaged,
    packaged_files,
    parse_toml,
    parsed_ahead_document,
    presets_dir,
    read_toml,
)

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


def test_the_parsed_ahead_file_is_up_to_date() -> None:
    committed = (PACKAGE / PARSED_AHEAD).read_text(encoding="utf-8")
    assert committed == parsed_ahead_document(), (
        f"regenerate: python -m inboxcheck._packaged > inboxcheck/{PARSED_AHEAD}"
    )


def test_every_shipped_toml_text_parses_ahead_exactly_as_tomllib_parses_it() -> None:
    # The same values (dates as dates), the same order of keys, and a new object on every call.
    texts = [f.read_text(encoding="utf-8") for f in _shipped_toml()]
    assert len(texts) >= 30
    for text in texts:
        assert _digest(text) in _parsed_ahead()
        ours, theirs = parse_toml(text, source="x"), tomllib.loads(text)
        assert ours == theirs
        assert json.dumps(ours, default=repr) == json.dumps(theirs, default=repr)  # key order too
        assert parse_toml(text, source="x") is not ours
    on = parse_toml((presets_dir() / "custom.toml").read_text(encoding="utf-8"), source="x")["checked"]["on"]
    assert isinstance(on, datetime.date)


def test_an_edited_file_is_parsed_never_looked_up(tmp_path: Path) -> None:
    # Keyed by the text's digest: a preset changed by one character gets the TOML parse, not the
    # value parsed ahead from the shipped text.
    shipped = (presets_dir() / "custom.toml").read_text(encoding="utf-8")
    edited = shipped.replace('name = "', 'name = "Edited ', 1)
    assert edited != shipped
    (tmp_path / "custom.toml").write_text(edited, encoding="utf-8")
    assert _digest(edited) not in _parsed_ahead()
    assert read_toml(tmp_path / "custom.toml") == tomllib.loads(edited) != tomllib.loads(shipped)
