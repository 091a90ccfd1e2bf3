"""The service takes what the CLI takes: diagnose's ``--previous`` and ``--no-alternates``, discover's
``--trust-host``, with the same meaning and the same refusals. A real uvicorn process, a real httpx
client, the lab's servers."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from inboxcheck._diagnose import Diagnosis
from inboxcheck._models import Report
from inboxcheck.discovery.model import CredentialUse, Discovery, ProbeResult
from lab import Lab
from tests.helpers import CANARY
from tests.test_service import TOKEN, Service

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def parity_service(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("parity") / "service.log"
    running = Service(lab, log, "--concurrency", "2", "--timeout", "10", "--deadline", "60")
    yield running
    running.stop()


@pytest.fixture
async def client(parity_service: Service) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=parity_service.url, headers=headers, timeout=90) as http:
        yield http


def _fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    document = response.json()
    assert document["kind"] == "input_error"
    return {f["evidence"]["field"]: f["message"] for f in document["findings"]}


# --- diagnose: previous ----------------------------------------------------------------------------


async def test_diagnose_with_an_earlier_report_notices_a_dkim_key_that_changed(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    account = lab.account()
    checked = await client.post("/v1/check?dkim_selector=lab", json=account)
    assert checked.status_code == 200, checked.text
    earlier = checked.json()
    dkim = next(c for c in earlier["checks"] if c["name"] == "dns.dkim")
    selector = next(iter(dkim["details"]["keys"]))
    dkim["details"]["keys"][selector]["record"] = "v=DKIM1; k=rsa; p=OLDKEY"

    diagnosed = await client.post(
        "/v1/diagnose?dkim_selector=lab", json={"account": account, "previous": earlier}
    )
    assert diagnosed.status_code == 200, diagnosed.text
    [notice] = [
        n
        for n in Diagnosis.model_validate_json(diagnosed.text).notices
        if n.code == "diagnose.dkim_key_changed"
    ]
    assert notice.evidence["selector"] == selector
    assert notice.evidence["before"] == "v=DKIM1; k=rsa; p=OLDKEY"
    assert account["smtp_password"] not in diagnosed.text

    # The same report unchanged, and the bare payload (no earlier report): nothing changed.
    same = await client.post(
        "/v1/diagnose?dkim_selector=lab",
        json={
            "account": account,
            "previous": Report.model_validate_json(checked.text).model_dump(mode="json"),
        },
    )
    bare = await client.post("/v1/diagnose?dkim_selector=lab", json=account)
    for response in (same, bare):
        assert response.status_code == 200, response.text
        codes = {n.code for n in Diagnosis.model_validate_json(response.text).notices}
        assert "diagnose.dkim_key_changed" not in codes


@pytest.mark.parametrize(
    ("previous", "said"),
    [
        ({"verdict": "pass"}, "not an inboxcheck JSON report"),
        ("an earlier report", "not an inboxcheck JSON report"),
        ([1, 2], "not an inboxcheck JSON report"),
    ],
)
async def test_diagnose_refuses_an_earlier_report_that_is_none_as_diagnose_previous_does(
    lab: Lab, client: httpx.AsyncClient, previous: Any, said: str
) -> None:
    account = lab.account() | {"smtp_password": CANARY, "imap_password": CANARY}
    response = await client.post("/v1/diagnose", json={"account": account, "previous": previous})
    told = _fields(response)
    assert said in told["previous"]
    assert CANARY not in response.text


async def test_a_diagnose_body_with_an_unknown_field_or_no_account_object_is_refused(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    account = lab.account() | {"smtp_password": CANARY, "imap_password": CANARY}
    extra = await client.post("/v1/diagnose", json={"account": account, "previus": {}})
    assert "previus" in _fields(extra)
    not_an_object = await client.post("/v1/diagnose", json={"account": [CANARY]})
    assert "account" in _fields(not_an_object)
    # The account inside is read as /v1/check reads a payload: its own problems, field by field.
    bad_port = await client.post("/v1/diagnose", json={"account": account | {"smtp_port": 0}})
    assert "smtp_port" in _fields(bad_port)
    for response in (extra, not_an_object, bad_port):
        assert CANARY not in response.text


# --- diagnose: no_alternates -----------------------------------------------------------------------


async def test_no_alternates_tries_none_of_the_other_endpoints(lab: Lab, client: httpx.AsyncClient) -> None:
    # Implicit TLS on the port, the payload says STARTTLS: the same port in the other mode is the fix.
    port = lab.imap["imaps"].port
    account = lab.account() | {"imap_port": port, "imap_use_ssl": False}
    tried = Diagnosis.model_validate_json((await client.post("/v1/diagnose", json=account)).text)
    assert tried.causes[0].code == "imap.tls.mode_mismatch"
    assert (tried.alternatives[0].port, tried.alternatives[0].result) == (port, "works")
    assert tried.suggested_changes["imap_use_ssl"] is True

    response = await client.post("/v1/diagnose?no_alternates=true", json=account)
    assert response.status_code == 200, response.text
    untried = Diagnosis.model_validate_json(response.text)
    assert untried.causes[0].code == "imap.tls.mode_mismatch"
    assert untried.alternatives == ()
    assert untried.suggested_changes == {}
    # With an earlier report too: the query and the body are read together.
    wrapped = await client.post("/v1/diagnose?no_alternates=1", json={"account": account})
    assert Diagnosis.model_validate_json(wrapped.text).alternatives == ()

    refused = await client.post("/v1/diagnose?no_alternates=maybe", json=account)
    assert "query parameter" in refused.json()["findings"][0]["fix"]
    assert refused.status_code == 422


# --- discover: trust_hosts -------------------------------------------------------------------------


async def test_discover_sends_the_password_to_a_foreign_host_only_when_trusted(
    client: httpx.AsyncClient, parity_service: Service
) -> None:
    # srv-foreign.test's SRV records name mail.lab.test: outside the address's domain.
    address = f"proof-{secrets.token_hex(4)}@srv-foreign.test"
    untrusted = await client.post("/v1/discover", json={"email_address": address, "password": CANARY})
    assert untrusted.status_code == 200, untrusted.text
    withheld = Discovery.model_validate_json(untrusted.text)
    assert withheld.candidates
    assert {c.credential for c in withheld.candidates} <= {CredentialUse.WITHHELD, CredentialUse.NOT_GIVEN}
    assert "discover.untrusted_host" in {f.code for f in withheld.findings}

    trusted = await client.post(
        "/v1/discover",
        json={"email_address": address, "password": CANARY, "trust_hosts": ["Mail.Lab.Test."]},
    )
    assert trusted.status_code == 200, trusted.text
    sent = Discovery.model_validate_json(trusted.text)
    tried = [c for c in sent.candidates if c.result is not ProbeResult.NOT_EXPRESSIBLE]
    assert CredentialUse.SENT in {c.credential for c in tried}
    assert "discover.untrusted_host" not in {f.code for f in sent.findings}
    for response in (untrusted, trusted):
        assert CANARY not in response.text
    assert CANARY not in parity_service.log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize(
    "trust_hosts",
    [
        [f"h{i}.lab.test" for i in range(17)],
        [""],
        ["x" * 254],
        "mail.lab.test",
        [3],
    ],
)
async def test_discover_refuses_trust_hosts_it_cannot_use(
    client: httpx.AsyncClient, trust_hosts: Any
) -> None:
    body = {"email_address": "x@lab.test", "password": CANARY, "trust_hosts": trust_hosts}
    response = await client.post("/v1/discover", json=body)
    assert "trust_hosts" in _fields(response)
    assert CANARY not in response.text


# --- check and diagnose: trust_host (a partial payload) --------------------------------------------


def _partial(address: str) -> dict[str, Any]:
    """What a platform knows before discovery: the address, a name and the password."""
    return {
        "email_address": address,
        "display_name": "Proof Sender",
        "smtp_password": CANARY,
        "imap_password": CANARY,
    }


async def test_a_partial_payload_is_completed_with_a_foreign_host_only_when_trusted(
    client: httpx.AsyncClient, parity_service: Service
) -> None:
    # srv-foreign.test's SRV records name mail.lab.test: outside the address's domain, so check
    # --trust-host is needed before its password may go there (and a check logs in).
    address = f"proof-{secrets.token_hex(4)}@srv-foreign.test"
    untrusted = await client.post("/v1/check", json=_partial(address))
    refused = _fields(untrusted)
    assert "smtp_host" in refused and "discover.untrusted_host" in refused["smtp_host"]

    checked = await client.post("/v1/check?trust_host=Mail.Lab.Test.", json=_partial(address))
    assert checked.status_code == 200, checked.text
    report = Report.model_validate_json(checked.text)
    assert report.checks[0].name == "account.discovered"
    assert (report.account.smtp_host, report.account.imap_host) == ("mail.lab.test", "mail.lab.test")

    diagnosed = await client.post(
        "/v1/diagnose?no_alternates=true&trust_host=mail.lab.test", json={"account": _partial(address)}
    )
    assert diagnosed.status_code == 200, diagnosed.text
    diagnosis = Diagnosis.model_validate_json(diagnosed.text)
    assert diagnosis.report.checks[0].name == "account.discovered"
    assert diagnosis.report.account.smtp_host == "mail.lab.test"
    untrusted_diagnose = await client.post("/v1/diagnose?no_alternates=true", json=_partial(address))
    assert "discover.untrusted_host" in _fields(untrusted_diagnose)["smtp_host"]
    for response in (untrusted, checked, diagnosed, untrusted_diagnose):
        assert CANARY not in response.text
    assert CANARY not in parity_service.log.read_text(encoding="utf-8", errors="replace")


async def test_a_batch_completes_partial_payloads_with_a_foreign_host_only_when_trusted(
    client: httpx.AsyncClient, parity_service: Service
) -> None:
    address = f"proof-{secrets.token_hex(4)}@srv-foreign.test"

    async def lines(query: str) -> list[dict[str, Any]]:
        started = await client.post(f"/v1/batches{query}", json=[_partial(address)])
        assert started.status_code == 202, started.text
        results = await client.get(started.json()["results_url"])
        assert results.status_code == 200, results.text
        return [json.loads(line) for line in results.text.splitlines()]

    [untrusted] = await lines("")
    assert untrusted["verdict"] == "invalid" and "discover.untrusted_host" in untrusted["error"], untrusted
    [trusted] = await lines("?trust_host=Mail.Lab.Test.&trust_host=other.lab.test")
    report = Report.model_validate(trusted["report"])
    assert report.checks[0].name == "account.discovered"
    assert (report.account.smtp_host, report.account.imap_host) == ("mail.lab.test", "mail.lab.test")
    for line in (untrusted, trusted):
        assert CANARY not in json.dumps(line)
    assert CANARY not in parity_service.log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize("path", ["/v1/check", "/v1/diagnose", "/v1/batches"])
@pytest.mark.parametrize(
    "query",
    [
        "&".join(f"trust_host=h{i}.lab.test" for i in range(17)),  # discover's limit: 16
        "trust_host=",
        "trust_host=" + "x" * 254,
    ],
)
async def test_check_diagnose_and_batches_refuse_trust_hosts_discover_refuses(
    lab: Lab, client: httpx.AsyncClient, path: str, query: str
) -> None:
    response = await client.post(f"{path}?{query}", json=_partial("x@lab.test"))
    assert "trust_host" in _fields(response)
    assert CANARY not in response.text
