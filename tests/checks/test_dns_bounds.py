"""Bounded DNS: a zone with thousands of MX hosts or SPF terms costs a bounded number of queries, the
excess is reported, and no other check of the run pays for it (issue 10 §10).

The big zones are generated at test time and served by a lab of their own (``zone_dirs=``).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inboxcheck._models import Report, Status
from inboxcheck._options import Nameserver
from inboxcheck.dns.client import DnsClient, DnsStatus
from lab import Lab
from lab.types import LabStartError
from tests.checks.test_dns import audit, by_code, client_for
from tests.checks.test_dns_wire import question_of, reply

pytestmark = pytest.mark.lab

MX_HOSTS = 3000
SPF_TERMS = 3500
REPORT_DESTINATIONS = 30
ROOT = Path(__file__).resolve().parents[2]
SOA = """$TTL 300
@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 3600 600 86400 300
@ IN NS ns1.lab.test.
"""


def _txt(text: str) -> str:
    """A TXT record's data as 255-byte strings (joined without spaces by receivers)."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def _write_zones(directory: Path) -> None:
    mx = [SOA, '@ IN TXT "v=spf1 mx -all"']
    mx += [f"@ IN MX {n % 65535} h{n}" for n in range(MX_HOSTS)]
    mx += [f"h{n} IN A 192.0.2.{n % 250 + 1}" for n in range(MX_HOSTS)]
    (directory / "bigmx.test.zone").write_text("\n".join(mx) + "\n")
    record = "v=spf1 " + " ".join(f"a:{n}.s.test" for n in range(SPF_TERMS)) + " -all"
    spf = [SOA, "@ IN MX 10 mail", "mail IN A 192.0.2.25", f"@ IN TXT {_txt(record)}"]
    spf += [f"{n} IN A 192.0.2.{n % 250 + 1}" for n in range(0, SPF_TERMS, 7)]
    (directory / "s.test.zone").write_text("\n".join(spf) + "\n")
    rua = ",".join(f"mailto:d@r{n}.s.test" for n in range(REPORT_DESTINATIONS))
    (directory / "rua.test.zone").write_text(
        SOA + f"_dmarc IN TXT {_txt(f'v=DMARC1; p=reject; rua={rua}')}\n"
    )


@pytest.fixture(scope="module")
def big_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    zones = tmp_path_factory.mktemp("bigzones")
    _write_zones(zones)
    lab = Lab(zone_dirs=[zones])
    try:
        lab.start()
    except LabStartError:
        # The free ports are picked before the servers bind them; on a machine shared with other
        # labs one may be taken in between. A second start picks new ones.
        lab.stop()
        lab = Lab(zone_dirs=[zones])
        lab.start()
    try:
        yield lab
    finally:
        lab.stop()


async def bounded_audit(lab: Lab, email: str) -> Report:
    """The DNS checks of ``email``, asserting that they sent a bounded number of queries."""
    client = client_for(lab.nameserver)
    report = await audit(lab, email, client=client)
    assert client.sent < 120, client.sent
    return report


async def test_thousands_of_mx_hosts_cost_a_bounded_number_of_queries(big_lab: Lab) -> None:
    report = await bounded_audit(big_lab, "a@bigmx.test")
    mx = report.check("dns.mx")
    finding = by_code(mx)["dns.mx.too_many_hosts"]
    assert finding.evidence["mx_count"] == MX_HOSTS
    assert len(finding.evidence["checked"]) == 10  # type: ignore[arg-type]
    assert mx.status is Status.WARN
    # SPF "mx" over 10 names is a permanent error, counted without resolving the names.
    assert "dns.spf.too_many_lookups" in by_code(report.check("dns.spf"))


async def test_thousands_of_spf_terms_stop_where_a_receiver_stops(big_lab: Lab) -> None:
    spf = (await bounded_audit(big_lab, "a@s.test")).check("dns.spf")
    finding = by_code(spf)["dns.spf.too_many_lookups"]
    assert finding.evidence["lookup_count"] == SPF_TERMS
    assert finding.evidence["terms_not_looked_up"] == SPF_TERMS - 20
    assert "at least" in finding.message
    assert len(spf.details["terms"]) == 50  # type: ignore[arg-type]


async def test_report_destinations_are_bounded(big_lab: Lab) -> None:
    dmarc = (await bounded_audit(big_lab, "a@rua.test")).check("dns.dmarc")
    assert len(dmarc.details["report_destinations_not_checked"]) == REPORT_DESTINATIONS - 10  # type: ignore[arg-type]
    assert sum(f.code == "dns.dmarc.rua_unauthorised" for f in dmarc.findings) == 10


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.mark.parametrize("domain", ["bigmx.test", "s.test"])
def test_no_check_fails_for_another_under_a_descriptor_limit(
    big_lab: Lab, tmp_path: Path, domain: str
) -> None:
    payload = big_lab.account("alice@lab.test", smtp="submission", imap="imaps")
    payload["email_address"] = f"alice@{domain}"
    account = tmp_path / "account.json"
    account.write_text(json.dumps(payload))
    host, port = big_lab.nameserver
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "inboxcheck",
            "check",
            str(account),
            "--nameserver",
            f"{host}:{port}",
            "--ca-file",
            str(big_lab.ca_file),
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_descriptors,
        check=False,
    )
    report = json.loads(proc.stdout)
    codes = {f["code"] for check in report["checks"] for f in check["findings"]}
    assert not any(code.startswith("internal.") for code in codes), proc.stdout
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["imap.login"] == "pass" and statuses["smtp.login"] == "pass", statuses
    assert "dns.unavailable" not in codes


class _SlowServer(asyncio.DatagramProtocol):
    """Answers NXDOMAIN a moment after each query, and remembers how many names were open at once."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.open: set[bytes] = set()
        self.peak = 0
        self.names: set[bytes] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        question = question_of(data)
        self.open.add(question)
        self.names.add(question)
        self.peak = max(self.peak, len(self.open))
        asyncio.get_running_loop().call_later(0.2, self._answer, data, addr, question)

    def _answer(self, query: bytes, addr: tuple[str | int, ...], question: bytes) -> None:
        self.open.discard(question)
        if self.transport is not None:
            self.transport.sendto(reply(query, flags=0x8183), addr)


async def test_queries_in_flight_are_bounded_per_client() -> None:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(_SlowServer, local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    try:
        client = DnsClient([Nameserver(host=host, port=port)], timeout=5.0, max_in_flight=4)
        answers = await asyncio.gather(*(client.query(f"n{n}.example.test", "A") for n in range(20)))
    finally:
        transport.close()
    assert {answer.status for answer in answers} == {DnsStatus.NXDOMAIN}
    assert len(server.names) == 20
    assert server.peak == 4
