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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "committed_discovery_schema",
    "committed_report_schema",
    "discovery_schema",
    "generated_discovery_schema",
    "generated_report_schema",
    "report_schema",
]

SCHEMA_ID = "https://inboxcheck.dev/schema/report-1.json"
SCHEMA_FILE = "report.schema.json"
DISCOVERY_SCHEMA_ID = "https://inboxcheck.dev/schema/discovery-1.json"
DISCOVERY_SCHEMA_FILE = "discovery.schema.json"


def committed_report_schema_text() -> str:
    """The committed schema file exactly as shipped in the package."""
    return _committed_text(SCHEMA_FILE)


def committed_report_schema() -> dict[str, Any]:
    """The schema file shipped with the package, parsed."""
    return _committed(SCHEMA_FILE)


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the report that ``--format json`` writes: the committed file."""
    return committed_report_schema()


def generated_report_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Report` model (serialisation mode: what JSON holds)."""
    # Imported here so that reading the committed schema does not load pydantic.
    from inboxcheck._models import Report

    return _generated(Report, SCHEMA_ID)


def committed_discovery_schema() -> dict[str, Any]:
    """``inboxcheck/discovery.schema.json``, the schema of ``discover --format json``, parsed."""
    return _committed(DISCOVERY_SCHEMA_FILE)


def discovery_schema() -> dict[str, Any]:
    """The JSON Schema of ``discover --format json``: the committed file (see the module's note)."""
    return committed_discovery_schema()


def generated_discovery_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Discovery` model; a test keeps the file equal to it."""
    from inboxcheck.discovery.model import Discovery

    return _generated(Discovery, DISCOVERY_SCHEMA_ID)


def _committed_text(name: str) -> str:
    return resources.files("inboxcheck").joinpath(name).read_text(encoding="utf-8")


def _committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_committed_text(name))
    return data


def _generated(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, **schema}


def _main() -> None:
    import sys

    # python -m inboxcheck._schema [discovery] > inboxcheck/{report,discovery}.schema.json
    generated = generated_discovery_schema if sys.argv[1:] == ["discovery"] else generated_report_schema
    print(json.dumps(generated(), indent=2))


if __name__ == "__main__":
    _main()
