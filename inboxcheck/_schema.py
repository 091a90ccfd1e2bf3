"""The JSON Schema of every document the CLI prints, each committed as ``inboxcheck/<name>.schema.json``.

The committed files are the schemas: what ``inboxcheck schema NAME`` prints and :func:`schema`
returns. They are read, not regenerated, because pydantic writes the same model differently from one
release to the next (2.7 adds ``enum`` beside every ``const`` and leaves out ``propertyNames``), and a
published schema must not change with the pydantic a user happens to have. A test keeps each file
equal to :func:`generated_schema`. After changing a model, regenerate its file with
``python -m inboxcheck._schema NAME > inboxcheck/NAME.schema.json`` (``report`` when no name is given).

A new document is one line in :data:`DOCUMENTS` and its committed file.
"""

from __future__ import annotations

import importlib
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "DOCUMENTS",
    "committed_discovery_schema",
    "committed_report_schema",
    "committed_schema",
    "discovery_schema",
    "generated_discovery_schema",
    "generated_report_schema",
    "generated_schema",
    "report_schema",
    "schema",
]


class Document(NamedTuple):
    """A JSON document the CLI prints: the model it is ("module:Class") and what prints it."""

    model: str
    printed_by: str


#: Every document, by the name ``inboxcheck schema NAME`` takes.
DOCUMENTS: Final = {
    "report": Document("inboxcheck._models:Report", "check --format json"),
    "diagnosis": Document("inboxcheck._diagnose:Diagnosis", "diagnose --format json"),
    "discovery": Document("inboxcheck.discovery.model:Discovery", "discover --format json"),
    "connect": Document("inboxcheck.platform.connect:ConnectResult", "connect --format json"),
    "batch-line": Document(
        "inboxcheck._batch_results:BatchLine",
        "check --batch --format json (each line on stdout, or of the --output file)",
    ),
    "batch-summary": Document(
        "inboxcheck._batch_results:BatchSummaryDocument",
        "check --batch --format json without --output (the last line)",
    ),
    "error": Document(
        "inboxcheck._input:InputErrorDocument", "check, diagnose, connect --format json: an unusable account"
    ),
}


def schema_id(name: str) -> str:
    return f"https://inboxcheck.dev/schema/{name}-1.json"


def schema_file(name: str) -> str:
    return f"{name}.schema.json"


def committed_schema_text(name: str) -> str:
    """The committed schema file of document ``name`` exactly as shipped in the package."""
    return resources.files("inboxcheck").joinpath(schema_file(name)).read_text(encoding="utf-8")


def committed_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(committed_schema_text(name))
    return data


def schema(name: str = "report") -> dict[str, Any]:
    """The JSON Schema of document ``name`` (see :data:`DOCUMENTS`): the committed file."""
    if name not in DOCUMENTS:
        raise KeyError(f"no document {name!r}; known: {', '.join(DOCUMENTS)}")
    return committed_schema(name)


def generated_schema(name: str) -> dict[str, Any]:
    """The schema generated from document ``name``'s model (serialisation mode: what JSON holds)."""
    module, _, attribute = DOCUMENTS[name].model.partition(":")
    model: type[BaseModel] = getattr(importlib.import_module(module), attribute)
    generated = model.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id(name), **generated}


def committed_report_schema_text() -> str:
    """The committed report schema exactly as shipped in the package."""
    return committed_schema_text("report")


def committed_report_schema() -> dict[str, Any]:
    """The report schema shipped with the package, parsed."""
    return committed_schema("report")


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the report that ``--format json`` writes: the committed file."""
    return committed_schema("report")


def generated_report_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Report` model."""
    return generated_schema("report")


def committed_discovery_schema() -> dict[str, Any]:
    """``inboxcheck/discovery.schema.json``, the schema of ``discover --format json``, parsed."""
    return committed_schema("discovery")


def discovery_schema() -> dict[str, Any]:
    """The JSON Schema of ``discover --format json``: the committed file (see the module's note)."""
    return committed_schema("discovery")


def generated_discovery_schema() -> dict[str, Any]:
    """The schema generated from the :class:`Discovery` model; a test keeps the file equal to it."""
    return generated_schema("discovery")


def _main() -> None:
    import sys

    # python -m inboxcheck._schema [NAME] > inboxcheck/NAME.schema.json
    name = sys.argv[1] if sys.argv[1:] else "report"
    print(json.dumps(generated_schema(name), indent=2))


if __name__ == "__main__":
    _main()
