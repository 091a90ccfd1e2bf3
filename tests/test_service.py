"""``inboxcheck serve``: a real uvicorn process on a free loopback port, a real httpx client, the lab.

One server (concurrency 1, no wait queue: the limits are easy to reach) serves most tests; the
SIGTERM tests start their own. Slow hostile peers (tests/peers.py) hold a check mid-login where a
test needs one in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inboxcheck._models import Report
from lab import Lab
from tests.helpers import CANARY, custom_payload
from tests.peers import Peer, PeerConn

TOKEN = "svc-token-Zq81!secret"
OTHER_TOKEN = "svc-token-second-one"
# Long enough that only a cancellation, never a timeout, closes a stalled login within WAIT.
SLOW_TIMEOUT = 40
WAIT = 20.0

pytestmark = pytest.mark.lab


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """``python -m inboxcheck serve`` in its own process; its stderr (the log) kept in a file."""

    def __init__(self, lab: Lab | None, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        """``lab`` None: a service that checks nothing in the test (its DNS and CA are the system's)."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        lab_args = []
        if lab is not None:
            host, port = lab.nameserver
            lab_args = ["--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file)]
        args = [sys.executable, "-m", "inboxcheck", "serve", "--port", str(self.port), *lab_args, *extra]
        environment = {**os.environ, "INBOXCHECK_API_TOKENS": f"{TOKEN},{OTHER_TOKEN}", **(env or {})}
        self._log_handle = log.open("wb")
        self.process = subprocess.Popen(
            args, stdout=self._log_handle, stderr=subprocess.STDOUT, env=environment
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the service did not start in 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()


@pytest.fixture(scope="module")
def service(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("service") / "service.log"
    running = Service(
        lab, log, "--concurrency", "1", "--queue", "0", "--timeout", str(SLOW_TIMEOUT), "--deadline", "120"
    )
    yield running
    running.stop()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=60) as http:
        yield http


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _until(predicate: Any, what: str) -> None:
    """Wait for ``predicate()`` (sync or async) to hold, at most WAIT seconds: a bound, not a timing."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


class Stalled:
    """A server that accepts logins' connections and says nothing; notes each one the client closes."""

    def __init__(self) -> None:
        self.closed: list[PeerConn] = []

    async def __call__(self, conn: PeerConn) -> None:
        await conn.until_closed()
        self.closed.append(conn)


def _stalled_payload(peer: Peer, **changes: Any) -> dict[str, Any]:
    return custom_payload(
        smtp_host="127.0.0.1", smtp_port=peer.port, imap_host="127.0.0.1", imap_port=peer.port, **changes
    )


# --- one check ------------------------------------------------------------------------------------


async def test_a_good_account_is_200_with_the_report_of_check_format_json(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/check", json=lab.account())
    assert response.status_code == 200, response.text
    report = Report.model_validate_json(response.text)
    assert report.verdict in ("pass", "warn"), [(c.name, c.status) for c in report.checks]
    assert report.check("smtp.login").status == "pass"
    assert lab.user().password not in response.text


async def test_a_wrong_password_is_200_with_a_failing_report_and_no_password(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    payload = lab.account() | {"smtp_password": CANARY, "imap_password": CANARY}
    response = await client.post("/v1/check", json=payload)
    assert response.status_code == 200, response.text
    report = Report.model_validate_json(response.text)
    assert report.verdict == "fail"
    assert report.check("smtp.login").status == "fail"
    assert CANARY not in response.text


async def test_an_invalid_payload_is_422_with_the_clis_error_document(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    from inboxcheck._errors import AccountError
    from inboxcheck._input import parse_account
    from inboxcheck.cli._report import render_input_error

    payload = lab.account() | {"smtp_port": 0, "imap_use_ssl": "yes", "smtp_pasword": CANARY}
    response = await client.post("/v1/check", json=payload)
    assert response.status_code == 422
    with pytest.raises(AccountError) as raised:
        parse_account(payload, source="request body", env={})
    assert response.json() == json.loads(render_input_error(raised.value))
    assert {f["evidence"]["field"] for f in response.json()["findings"]} >= {"smtp_port", "imap_use_ssl"}
    assert CANARY not in response.text
    no_password = {k: v for k, v in lab.account().items() if not k.endswith("_password")}
    missing = await client.post("/v1/check", json=no_password)
    assert missing.status_code == 422
    told = {f["evidence"]["field"]: f["message"] for f in missing.json()["findings"]}
    assert told["smtp_password"] == "smtp_password: is missing: give it in the request body"
    not_json = await client.post("/v1/check", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["kind"] == "input_error"


async def test_a_bad_query_value_is_422_with_the_error_document(lab: Lab, client: httpx.AsyncClient) -> None:
    too_many = "&".join(f"dkim_selector=s{i}" for i in range(17))
    for query in ("send_test=maybe", "dkim_selector=bad_selector!", too_many):
        response = await client.post(f"/v1/check?{query}", json=lab.account())
        assert response.status_code == 422, (query, response.text)
        assert response.json()["kind"] == "input_error"
        assert "query parameter" in response.json()["findings"][0]["fix"]


async def test_without_a_valid_token_it_is_401_before_the_body_is_read(lab: Lab, service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await anonymous.post("/v1/check", json=lab.account(), headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await anonymous.get("/metrics")).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
        second = await anonymous.post(
            "/v1/check", json={"nope": 1}, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
        )
        assert second.status_code == 422  # every configured token is accepted


async def test_a_body_over_64_kib_is_413_while_it_is_read(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: only counting while reading can stop it.
        nonlocal sent
        yield b'{"email_address": "'
        for _ in range(64):
            sent += 1
            yield b"a" * 4096

    response = await client.post("/v1/check", content=chunks())
    assert response.status_code == 413
    declared = await client.post("/v1/check", content=b"x" * (64 * 1024 + 1))
    assert declared.status_code == 413


async def test_diagnose_and_discover_answer_with_the_clis_documents(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    from inboxcheck._diagnose import Diagnosis
    from inboxcheck.discovery.model import Discovery

    wrong = lab.account() | {"smtp_password": CANARY, "imap_password": CANARY}
    diagnosed = await client.post("/v1/diagnose", json=wrong)
    assert diagnosed.status_code == 200, diagnosed.text
    diagnosis = Diagnosis.model_validate_json(diagnosed.text)
    assert diagnosis.report.verdict == "fail" and CANARY not in diagnosed.text
    found = await client.post("/v1/discover", json={"email_address": lab.user().email, "password": CANARY})
    assert found.status_code == 200, found.text
    assert Discovery.model_validate_json(found.text).email_address == lab.user().email
    assert CANARY not in found.text
    bad = await client.post("/v1/discover", json={"email_address": "x", "pasword": CANARY})
    assert bad.status_code == 422 and bad.json()["kind"] == "input_error"
    assert CANARY not in bad.text


# --- in flight: limits, disconnects ---------------------------------------------------------------


async def test_over_the_limit_is_429_and_a_client_that_leaves_cancels_its_check(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    stalled = Stalled()
    async with Peer(stalled) as peer:
        held = asyncio.ensure_future(client.post("/v1/check", json=_stalled_payload(peer)))
        await _until(lambda: len(peer.connections) >= 2, "the held check's logins reached the peer")
        assert await _metric(client, "inboxcheck_checks_in_flight") == 1
        busy = await client.post("/v1/check", json=lab.account())
        assert busy.status_code == 429
        assert int(busy.headers["Retry-After"]) >= 1
        cancelled_before = await _metric(client, 'inboxcheck_checks_total{verdict="cancelled"}')
        held.cancel()  # the client goes away mid-check
        await asyncio.wait({held})
        await _until(lambda: len(stalled.closed) == len(peer.connections), "every login closed")
        await _until(lambda: _in_flight_is(client, 0), "no check left in flight after the client went away")
        assert await _metric(client, 'inboxcheck_checks_total{verdict="cancelled"}') == cancelled_before + 1
        after = len(peer.connections)
        await asyncio.sleep(0.5)
        assert len(peer.connections) == after  # nothing started again
    assert (await client.post("/v1/check", json=lab.account())).status_code == 200


async def _in_flight_is(client: httpx.AsyncClient, value: int) -> bool:
    return await _metric(client, "inboxcheck_checks_in_flight") == value


# --- batches --------------------------------------------------------------------------------------


async def test_a_batch_is_created_polled_and_streamed(lab: Lab, client: httpx.AsyncClient) -> None:
    wrong = lab.account("bob") | {"smtp_password": CANARY, "imap_password": CANARY}
    lines = [json.dumps(lab.account()), json.dumps(wrong), "{broken", json.dumps({"smtp_port": 1})]
    created = await client.post(
        "/v1/batches", content="\n".join(lines) + "\n", headers={"Content-Type": "application/x-ndjson"}
    )
    assert created.status_code == 202, created.text
    batch = created.json()
    assert batch["total"] == 4
    seen: list[dict[str, Any]] = []
    async with client.stream("GET", batch["results_url"]) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line:
                seen.append(json.loads(line))
    assert sorted(r["line"] for r in seen) == [1, 2, 3, 4]
    verdicts = {r["line"]: r["verdict"] for r in seen}
    assert verdicts[1] in ("pass", "warn") and verdicts[2] == "fail"
    assert verdicts[3] == verdicts[4] == "invalid"
    status = (await client.get(batch["status_url"])).json()
    assert status["state"] == "done" and status["done"] == 4 and status["eta_seconds"] == 0
    assert sum(status["counts"].values()) == 4
    everything = (await client.get(batch["results_url"])).text
    assert CANARY not in everything and lab.user().password not in everything
    as_array = await client.post("/v1/batches", json=[lab.account()])
    assert as_array.status_code == 202 and as_array.json()["total"] == 1


async def test_a_cancelled_batch_closes_its_logins(client: httpx.AsyncClient) -> None:
    stalled = Stalled()
    async with Peer(stalled) as peer:
        accounts = [_stalled_payload(peer, email_address=f"u{i}@example.test") for i in range(3)]
        created = (await client.post("/v1/batches", json=accounts)).json()
        await _until(lambda: len(peer.connections) >= 2, "the batch's first logins reached the peer")
        polled = (await client.get(created["status_url"])).json()
        assert polled["state"] == "running" and polled["done"] == 0
        deleted = await client.delete(created["status_url"])
        assert deleted.status_code == 200 and deleted.json()["state"] == "cancelled"
        await _until(lambda: len(stalled.closed) == len(peer.connections), "every login closed")
        assert await _metric(client, "inboxcheck_checks_in_flight") == 0
        results = await client.get(created["results_url"])  # ends: the batch is over
        assert results.status_code == 200 and results.text == ""
    assert (await client.get("/v1/batches/no-such-batch")).status_code == 404


# --- what the log holds -----------------------------------------------------------------------------


async def test_the_log_has_method_path_status_and_no_secret(
    lab: Lab, client: httpx.AsyncClient, service: Service
) -> None:
    payload = lab.account() | {"smtp_password": CANARY, "imap_password": CANARY}
    await client.post("/v1/check?dkim_selector=canaryselector", json=payload)
    await client.post("/v1/check", json=payload | {"smtp_port": "x"})
    log = service.log.read_text(encoding="utf-8", errors="replace")
    assert "POST /v1/check 200" in log and "POST /v1/check 422" in log
    for secret in (CANARY, TOKEN, OTHER_TOKEN, lab.user().password, "canaryselector", "smtp_password"):
        assert secret not in log


# --- SIGTERM ----------------------------------------------------------------------------------------


async def test_sigterm_lets_a_check_in_flight_finish_and_refuses_new_ones(lab: Lab, tmp_path: Path) -> None:
    stalled = Stalled()
    server = Service(lab, tmp_path / "log", "--timeout", "2", "--deadline", "20", "--drain", "60")
    try:
        async with (
            Peer(stalled) as peer,
            httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as client,
        ):
            held = asyncio.ensure_future(client.post("/v1/check", json=_stalled_payload(peer)))
            await _until(lambda: len(peer.connections) >= 2, "the check's logins reached the peer")
            server.process.send_signal(signal.SIGTERM)
            response = await held
            assert response.status_code == 200
            assert Report.model_validate_json(response.text).verdict in ("error", "fail")
            # uvicorn ends by raising the signal again once drained: killed by it, as a supervisor expects.
            assert await asyncio.to_thread(server.process.wait, 30) in (0, -signal.SIGTERM)
            await _until(lambda: len(stalled.closed) == len(peer.connections), "every login closed")
            with pytest.raises(httpx.TransportError):
                await client.get("/healthz")
    finally:
        server.stop()


async def test_sigterm_cancels_what_is_still_running_after_the_drain(lab: Lab, tmp_path: Path) -> None:
    stalled = Stalled()
    server = Service(
        lab, tmp_path / "log", "--timeout", str(SLOW_TIMEOUT), "--deadline", "120", "--drain", "1"
    )
    try:
        async with (
            Peer(stalled) as peer,
            httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as client,
        ):
            held = asyncio.ensure_future(client.post("/v1/check", json=_stalled_payload(peer)))
            await _until(lambda: len(peer.connections) >= 2, "the check's logins reached the peer")
            server.process.send_signal(signal.SIGTERM)
            await asyncio.wait({held})
            assert held.exception() is not None or held.result().status_code >= 500
            assert await asyncio.to_thread(server.process.wait, WAIT) in (0, -signal.SIGTERM)
            await _until(lambda: len(stalled.closed) == len(peer.connections), "every login closed")
    finally:
        server.stop()
