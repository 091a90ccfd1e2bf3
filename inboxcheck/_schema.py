"""The JSON Schema of the report, as committed in ``inboxcheck/report.schema.json``."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from inboxcheck._models import Report

__all__ = ["committed_discovery_schema", "committed_report_schema", "discovery_schema", "report_schema"]

SCHEMA_ID = "https://inboxcheck.dev/schema/report-1.json"
DISCOVERY_SCHEMA_ID = "https://inboxcheck.dev/schema/discovery-1.json"


def report_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Report` model (serialisation mode: what JSON holds)."""
    schema = Report.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def committed_report_schema() -> dict[str, Any]:
    """The schema file shipped with the package; a test keeps it equal to :func:`report_schema`."""
    text = resources.files("inboxcheck").joinpath("report.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def discovery_schema() -> dict[str, Any]:
    """The schema of ``discover --format json``, generated from the :class:`Discovery` model."""
    from inboxcheck.discovery.model import Discovery

    schema = Discovery.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": DISCOVERY_SCHEMA_ID, **schema}


def committed_discovery_schema() -> dict[str, Any]:
    """``inboxcheck/discovery.schema.json``; a test keeps it equal to :func:`discovery_schema`."""
    text = resources.files("inboxcheck").joinpath("discovery.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
