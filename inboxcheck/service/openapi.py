"""The service's OpenAPI document, committed as ``inboxcheck/openapi.json`` for clients in other
languages to generate from; a test keeps it equal to what the app generates. It documents the
fleet's routes too, which a server serves only with ``--fleet-db``. Regenerate with
``python -m inboxcheck.service.openapi > inboxcheck/openapi.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["committed_openapi", "generated_openapi"]


def generated_openapi() -> dict[str, Any]:
    from inboxcheck.service.app import create_app
    from inboxcheck.service.settings import ServiceSettings

    # With the fleet's routes (a service started with --fleet-db serves them); the app is never
    # started here, so no database is opened.
    document: dict[str, Any] = create_app(ServiceSettings(fleet_db="sqlite://")).openapi()
    return document


def committed_openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        resources.files("inboxcheck").joinpath("openapi.json").read_text(encoding="utf-8")
    )
    return document


if __name__ == "__main__":
    print(json.dumps(generated_openapi(), indent=2, sort_keys=False))
