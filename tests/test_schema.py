from __future__ import annotations

import json

from inboxcheck._schema import committed_report_schema, report_schema


def test_committed_schema_is_current() -> None:
    # Regenerate with: python -m inboxcheck schema > inboxcheck/report.schema.json
    assert committed_report_schema() == json.loads(json.dumps(report_schema()))


def test_schema_describes_every_status_and_the_finding_fields() -> None:
    schema = report_schema()
    defs = schema["$defs"]
    assert set(defs["Status"]["enum"]) == {"pass", "warn", "fail", "error", "skipped"}
    assert set(defs["Finding"]["required"]) >= {"code", "severity", "message"}
    assert "smtp_password" not in json.dumps(defs["AccountView"])


def test_committed_discovery_schema_is_current() -> None:
    # Regenerate with: python -m inboxcheck schema --discover > inboxcheck/discovery.schema.json
    from inboxcheck._schema import committed_discovery_schema, discovery_schema

    assert committed_discovery_schema() == json.loads(json.dumps(discovery_schema()))


def test_discovery_schema_has_the_issue_fields_and_no_password() -> None:
    from inboxcheck._schema import discovery_schema

    schema = discovery_schema()
    assert {"account", "candidates", "findings", "verdict"} <= set(schema["required"])
    candidate = schema["$defs"]["Candidate"]["properties"]
    assert {"protocol", "host", "port", "tls", "source", "result", "evidence"} <= set(candidate)
    assert "smtp_password" not in json.dumps(schema)
