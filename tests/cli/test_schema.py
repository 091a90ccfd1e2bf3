from __future__ import annotations

import json
from typing import Any

import pydantic
from click.testing import CliRunner

from inboxcheck import report_schema as public_report_schema
from inboxcheck._schema import (
    committed_report_schema,
    committed_report_schema_text,
    generated_report_schema,
    report_schema,
)
from inboxcheck.cli import cli
from tests.cli.runner import run

PYDANTIC = tuple(int(part) for part in pydantic.VERSION.split(".")[:2])


def _denoised(node: Any) -> Any:
    """Drop what pydantic before 2.10 writes differently from the committed schema, nothing else.

    Before 2.10 a ``Literal`` gets an ``enum`` repeating its ``const``, a dict keyed by an enum gets
    no ``propertyNames``, and a reference with a sibling keyword (a default, a description) is
    wrapped in a one-item ``allOf``. The lowest supported pydantic (see pyproject) is in that range, and CI
    runs the suite there too.
    """
    if isinstance(node, list):
        return [_denoised(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned = {key: _denoised(value) for key, value in node.items() if key != "propertyNames"}
    if "const" in cleaned and cleaned.get("enum") == [cleaned["const"]]:
        del cleaned["enum"]
    wrapped = cleaned.get("allOf")
    if isinstance(wrapped, list) and len(wrapped) == 1 and set(wrapped[0]) == {"$ref"}:
        del cleaned["allOf"]
        cleaned["$ref"] = wrapped[0]["$ref"]
    return cleaned


def test_committed_schema_is_current() -> None:
    generated = json.loads(json.dumps(generated_report_schema()))
    committed = committed_report_schema()
    regenerate = "regenerate: python -m inboxcheck._schema > inboxcheck/report.schema.json"
    if PYDANTIC >= (2, 10):
        assert generated == committed, regenerate
    else:
        assert _denoised(generated) == _denoised(committed), regenerate


def test_the_noise_filter_keeps_real_differences() -> None:
    committed = committed_report_schema()
    changed = json.loads(json.dumps(committed))
    changed["properties"]["counts"]["additionalProperties"] = {"type": "string"}
    assert _denoised(changed) != _denoised(committed)
    assert _denoised({"const": "1", "enum": ["1", "2"]}) == {"const": "1", "enum": ["1", "2"]}
    two = {"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}
    assert _denoised(two) == two


def test_schema_command_prints_the_committed_file_byte_for_byte() -> None:
    # Whatever pydantic is installed: the published schema does not change with it.
    result = CliRunner().invoke(cli, ["schema"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == committed_report_schema_text()
    assert report_schema() == public_report_schema() == committed_report_schema()


def test_schema_describes_every_status_and_the_finding_fields() -> None:
    schema = report_schema()
    defs = schema["$defs"]
    assert set(defs["Status"]["enum"]) == {"pass", "warn", "fail", "error", "skipped"}
    assert set(defs["Finding"]["required"]) >= {"code", "severity", "message"}
    assert "smtp_password" not in json.dumps(defs["AccountView"])


def test_committed_discovery_schema_is_current() -> None:
    from inboxcheck._schema import committed_discovery_schema, generated_discovery_schema

    generated = json.loads(json.dumps(generated_discovery_schema()))
    committed = committed_discovery_schema()
    regenerate = "regenerate: python -m inboxcheck._schema discovery > inboxcheck/discovery.schema.json"
    if PYDANTIC >= (2, 10):
        assert generated == committed, regenerate
    else:
        assert _denoised(generated) == _denoised(committed), regenerate


def test_schema_discover_prints_the_committed_discovery_schema() -> None:
    from importlib import resources

    result = CliRunner().invoke(cli, ["schema", "--discover"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == resources.files("inboxcheck").joinpath("discovery.schema.json").read_text()


def test_discovery_schema_has_the_issue_fields_and_no_password() -> None:
    from inboxcheck._schema import discovery_schema

    schema = discovery_schema()
    assert {"account", "candidates", "findings", "verdict"} <= set(schema["required"])
    candidate = schema["$defs"]["Candidate"]["properties"]
    assert {"protocol", "host", "port", "tls", "source", "result", "evidence"} <= set(candidate)
    assert "smtp_password" not in json.dumps(schema)


def test_schema_command_prints_the_committed_schema() -> None:
    assert json.loads(run(["schema"]).stdout) == committed_report_schema()
