"""Property-based fuzzing of the service from its own OpenAPI document (schemathesis): whatever a
client sends, no 5xx, and every response is one the document promises, in the shape it promises.

Bounded and reproducible: a fixed number of examples per operation, derandomized (the same inputs
every run). A real uvicorn on loopback (with --fleet-db, so the fleet's routes are fuzzed too);
every DNS lookup goes to the lab's server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lab import Lab
from tests.test_service import TOKEN, Service

pytestmark = [pytest.mark.lab, pytest.mark.slow]

EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_service(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from inboxcheck.fleet._crypto import new_key_text

    folder = tmp_path_factory.mktemp("fuzz")
    log: Path = folder / "service.log"
    running = Service(
        lab,
        log,
        *("--concurrency", "8", "--queue", "64", "--timeout", "2", "--deadline", "6"),
        *("--fleet-db", f"sqlite:///{folder / 'fleet.db'}"),
        env={"INBOXCHECK_FLEET_KEY": new_key_text()},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(fuzz_service: Service) -> object:
    return schemathesis.openapi.from_url(f"{fuzz_service.url}/openapi.json")


# Each operation on its own (schemathesis's own pytest plugin does not run under this pytest).
OPERATIONS = [
    ("POST", "/v1/check"),
    ("POST", "/v1/diagnose"),
    ("POST", "/v1/discover"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches/{batch_id}"),
    ("GET", "/v1/batches/{batch_id}/results"),
    ("DELETE", "/v1/batches/{batch_id}"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/fleet/accounts"),
    ("POST", "/v1/fleet/accounts"),
    ("DELETE", "/v1/fleet/accounts/{address}"),
    ("GET", "/v1/fleet/accounts/{address}/history"),
    ("GET", "/v1/fleet/changes"),
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_every_response_matches_the_document(api: Any, method: str, path: str) -> None:
    operation = api[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    fuzz()


def test_every_operation_is_fuzzed() -> None:
    from inboxcheck.service.openapi import committed_openapi

    documented = {(m.upper(), p) for p, ops in committed_openapi()["paths"].items() for m in ops}
    assert documented == set(OPERATIONS)
