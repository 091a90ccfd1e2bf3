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
