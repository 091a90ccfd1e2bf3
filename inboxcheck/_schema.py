"""The JSON Schema of the report, as committed in ``inboxcheck/report.schema.json``.

The committed file is the schema: what ``inboxcheck schema`` prints and :func:`report_schema` returns.
It is read, not regenerated, because pydantic writes the same model differently from one release to
the next (2.7 adds ``enum`` beside every ``const`` and leaves out ``propertyNames``), and a published
schema must not change with the pydantic a user happens to have. A test keeps the file equal to
:func:`generated_report_schema`. After changing the models, regenerate it with
``python -m inboxcheck._schema > inboxcheck/report.schema.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["committed_report_schema", "generated_report_schema", "report_schema"]

SCHEMA_ID = "https://inboxcheck.dev/schema/report-1.json"
SCHEMA_FILE = "report.schema.json"


def committed_report_schema_text() -> str:
    """The committed schema file exactly as shipped in the package."""
    return resources.files("inboxcheck").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def committed_report_schema() -> dict[str, Any]:
    """The schema file shipped with the package, parsed."""
    data: dict[str, Any] = json.loads(committed_report_schema_text())
    return data


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the report that ``--format json`` writes: the committed file."""
    return committed_report_schema()


def generated_report_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Report` model (serialisation mode: what JSON holds)."""
    # Imported here so that reading the committed schema does not load pydantic.
    from inboxcheck._models import Report

    schema = Report.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _main() -> None:
    print(json.dumps(generated_report_schema(), indent=2))


if __name__ == "__main__":
    _main()
