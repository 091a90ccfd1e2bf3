"""Every JSON document the CLI prints has a committed schema that is current, and what each command
prints validates against it (against the lab's real servers and the platform's API double)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from inboxcheck._schema import DOCUMENTS, committed_schema, committed_schema_text, generated_schema
from inboxcheck.cli import cli
from lab import Lab
from lab.api_double import ApiDouble
from tests.cli.test_schema import PYDANTIC, _denoised
from tests.helpers import batch_user, custom_payload, google_payload

KEY = "cs_test_" + "k" * 24


def _run(args: list[str], *, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, env=env or {}, catch_exceptions=False)


def _valid(document: Any, name: str) -> None:
    jsonschema.validate(document, committed_schema(name))


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_each_committed_schema_is_current(name: str) -> None:
    generated = json.loads(json.dumps(generated_schema(name)))
    committed = committed_schema(name)
    regenerate = f"regenerate: python -m inboxcheck._schema {name} > inboxcheck/{name}.schema.json"
    if PYDANTIC >= (2, 10):
        assert generated == committed, regenerate
    else:
        assert _denoised(generated) == _denoised(committed), regenerate


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_schema_name_prints_the_committed_file(name: str) -> None:
    result = _run(["schema", name])
    assert result.exit_code == 0, result.output
    assert result.stdout == committed_schema_text(name)


def test_schema_of_an_unknown_document_is_bad_usage() -> None:
    result = _run(["schema", "nope"])
    assert result.exit_code == 2
    assert "report" in result.stderr


def test_batch_lines_and_summary_validate(tmp_path: Path) -> None:
    bad_fields = batch_user(3) | {"smtp_port": "587", "inbox_type": "GMAIL"}
    lines = "\n".join([json.dumps(batch_user(1)), json.dumps(bad_fields), "{broken"]) + "\n"
    result = _run(["check", "--batch", "-", "--only", "account", "--format", "json"], input=lines)
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    *records, summary = documents
    assert len(records) == 3
    for record in records:
        _valid(record, "batch-line")
    _valid(summary, "batch-summary")
    assert summary["kind"] == "summary" and summary["exit_code"] == result.exit_code == 2


def test_the_error_document_validates(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(google_payload(smtp_port="587")), encoding="utf-8")
    result = _run(["check", str(path), "--format", "json"])
    assert result.exit_code == 2
    _valid(json.loads(result.stdout), "error")


def test_a_dry_run_connect_result_validates(tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    path.write_text(json.dumps(custom_payload()), encoding="utf-8")
    result = _run(["connect", str(path), "--only", "account", "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    _valid(json.loads(result.stdout), "connect")


@pytest.mark.lab
def test_check_diagnose_and_connect_of_a_lab_account_validate(lab: Lab, tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    # A wrong IMAP password: the diagnosis has causes, and connect's gate blocks.
    bad = lab.account("alice@lab.test", smtp="submission", imap="imaps") | {"imap_password": "wrong-Pass-1"}
    good = lab.account("alice@lab.test", smtp="submission", imap="imaps")
    host, port = lab.nameserver
    common = ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file), "--format", "json"]

    account.write_text(json.dumps(good), encoding="utf-8")
    _valid(json.loads(_run(["check", str(account), *common]).stdout), "report")
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        created = _run(
            ["connect", str(account), *common, "--api-url", api.url], env={"COLDSEND_API_KEY": KEY}
        )
    _valid(json.loads(created.stdout), "connect")

    account.write_text(json.dumps(bad), encoding="utf-8")
    diagnosed = _run(["diagnose", str(account), *common, "--no-alternates"])
    assert diagnosed.exit_code == 1, diagnosed.output
    document = json.loads(diagnosed.stdout)
    _valid(document, "diagnosis")
    assert document["causes"], "the test needs a diagnosis with causes"
    blocked = _run(["connect", str(account), *common, "--dry-run"])
    _valid(json.loads(blocked.stdout), "connect")
