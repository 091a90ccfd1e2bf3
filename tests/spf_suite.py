"""The SPF working group's test suites (RFC 7208 and RFC 4408), as pyspf ships them, and a DNS server
that serves their zone data on loopback.

The YAML files are taken from pyspf's source package on PyPI at test set-up (pinned version and
sha256), never committed: ``pip download`` fetches it into ``.cache/spf-suite/`` (git-ignored; set
``INBOXCHECK_TEST_CACHE`` to put it elsewhere), once.

The zone data is served by :class:`SuiteDnsServer`, a small dnspython server of the tests rather than
the lab's NSD, because the suite needs a server that misbehaves on purpose: names that never answer
(``TIMEOUT``, and every unknown name under ``error.``), TXT records with no strings, names NSD refuses
to load (labels with spaces and percent signs), CNAMEs answered with their targets. Its answers
mirror the suite's reference harness (pyspf's ``test/testspf.py``): an ``SPF`` entry also publishes a
TXT record unless the name lists TXT records of its own (``TXT: NONE`` lists none).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

PYSPF_VERSION: Final = "2.0.14"
PYSPF_SHA256: Final = "57a7ef01bda090173aafb6af0106251686ed73f03db4e911fcd34c57fc347186"
SUITES: Final = ("rfc7208-tests.yml", "rfc4408-tests.yml")
_ROOT: Final = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("INBOXCHECK_TEST_CACHE") or _ROOT / ".cache") / "spf-suite"


def suite_file(name: str) -> Path:
    """The path of one suite file, fetched from pyspf's sdist (checked against its sha256) once."""
    folder = cache_dir()
    target = folder / PYSPF_VERSION / name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"pyspf-{PYSPF_VERSION}.tar.gz"
    if not archive.exists() or hashlib.sha256(archive.read_bytes()).hexdigest() != PYSPF_SHA256:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(folder),
                f"pyspf=={PYSPF_VERSION}",
            ],
            check=False,
            timeout=300,
        )
        if not archive.exists():
            raise RuntimeError(
                f"could not download pyspf=={PYSPF_VERSION} from PyPI (pip download), which holds the SPF "
                f"test suites; reach PyPI once, or put pyspf-{PYSPF_VERSION}.tar.gz in {folder}"
            )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != PYSPF_SHA256:
        archive.unlink()
        raise RuntimeError(f"pyspf-{PYSPF_VERSION}.tar.gz has sha256 {digest}, expected {PYSPF_SHA256}")
    with tarfile.open(archive) as tar:
        for member in ("rfc7208-tests.yml", "rfc4408-tests.yml"):
            data = tar.extractfile(f"pyspf-{PYSPF_VERSION}/test/{member}")
            assert data is not None
            out = folder / PYSPF_VERSION / member
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(data.read())
            tmp.replace(out)
    return target


@dataclass(frozen=True)
class Case:
    id: str
    scenario: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    explanation: str | None
    spec: str


@dataclass
class Scenario:
    description: str
    zone: dict[str, list[Any]]
    cases: list[Case] = field(default_factory=list)


def load_suite(path: Path) -> list[Scenario]:
    import yaml

    scenarios: list[Scenario] = []
    with path.open("rb") as handle:
        for document in yaml.safe_load_all(handle):
            if not document:
                continue
            scenario = Scenario(str(document.get("description", "")), dict(document.get("zonedata") or {}))
            for case_id, data in (document.get("tests") or {}).items():
                result = data["result"]
                scenario.cases.append(
                    Case(
                        id=str(case_id),
                        scenario=scenario.description,
                        host=str(data["host"]),
                        mailfrom=str(data.get("mailfrom") or ""),
                        helo=str(data.get("helo") or ""),
                        results=tuple(result) if isinstance(result, list) else (str(result),),
                        explanation=data.get("explanation"),
                        spec=str(data.get("spec", "")),
                    )
                )
            scenarios.append(scenario)
    return scenarios


# --------------------------------------------------------------------------------------------------
# The server


_TIMEOUT: Final = "TIMEOUT"


def _key(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in labels if label)


def _name_labels(name: str) -> tuple[bytes, ...]:
    return _key(tuple(label.encode("utf-8") for label in name.rstrip(".").split(".")))


def _strings(value: Any) -> list[bytes]:
    values = value if isinstance(value, list) else [value]
    out: list[bytes] = []
    for item in values:
        data = str(item).encode("utf-8", "surrogateescape")
        # A DNS character-string holds 255 octets; a longer text is published as several.
        out.extend(data[i : i + 255] for i in range(0, len(data), 255)) if data else out.append(b"")
    return out


class SuiteDnsServer(asyncio.DatagramProtocol):
    """Serves one scenario's zone data over UDP on 127.0.0.1 (see the module's docstring)."""

    def __init__(self) -> None:
        self.zone: dict[tuple[bytes, ...], list[tuple[str, Any]]] = {}
        self.port = 0
        self.queries = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def load(self, zonedata: dict[str, list[Any]]) -> None:
        zone: dict[tuple[bytes, ...], list[tuple[str, Any]]] = {}
        for name, entries in zonedata.items():
            items: list[tuple[str, Any]] = []
            own_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
            spf: list[Any] = []
            for entry in entries:
                if entry == _TIMEOUT:
                    items.append((_TIMEOUT, None))
                    continue
                for rtype, value in entry.items():
                    if rtype == "SPF":
                        spf.append(value)
                    if value == "NONE":
                        continue
                    items.append((rtype, value))
            if not own_txt:
                items.extend(("TXT", value) for value in spf)
            zone[_name_labels(str(name))] = items
        self.zone = zone

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
            port = transport.get_extra_info("sockname")[1]
            # TCP on the same port, for answers too large for a datagram (sent truncated over UDP). The
            # kernel chose the UDP port alone: its TCP twin may be taken (another test's connection),
            # so on a clash both are let go and another pair is tried.
            try:
                self._tcp = await asyncio.start_server(self._stream, "127.0.0.1", port)
            except OSError:
                transport.close()
                continue
            self._transport, self.port = transport, port
            return self
        raise OSError("no free UDP+TCP port pair on 127.0.0.1")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            query = dns.message.from_wire(await reader.readexactly(size))
            response = self.answer(query)
            if response is not None:
                wire = response.to_wire(want_shuffle=False, max_size=65535)
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (OSError, EOFError, dns.exception.DNSException):
            pass
        finally:
            writer.close()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - a test server ignores junk
            return
        self.queries += 1
        response = self.answer(query)
        if response is None or self._transport is None:
            return
        try:
            wire = response.to_wire(want_shuffle=False)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            wire = response.to_wire(want_shuffle=False)
        self._transport.sendto(wire, addr)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response, or None to stay silent (a timeout)."""
        question = query.question[0]
        qtype = dns.rdatatype.to_text(question.rdtype)
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # authoritative
        owner = question.name
        labels = _key(owner.labels)
        for _hop in range(8):
            entries = self.zone.get(labels)
            if entries is None:
                if labels[:1] == (b"error",):
                    return None
                if not response.answer:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return response
            found: list[tuple[str, Any]] = []
            for rtype, value in entries:
                if rtype == _TIMEOUT:
                    if not found:
                        return None
                    break
                if rtype == qtype:
                    if value == _TIMEOUT:
                        return None
                    found.append((rtype, value))
            if found:
                response.answer.append(self._rrset(owner, qtype, [value for _, value in found]))
                return response
            cname = next((value for rtype, value in entries if rtype == "CNAME"), None)
            if cname is None or qtype == "CNAME":
                return response
            target = dns.name.from_text(str(cname))
            response.answer.append(self._rrset(owner, "CNAME", [str(cname)]))
            owner, labels = target, _key(target.labels)
        return response

    @staticmethod
    def _rrset(owner: dns.name.Name, rtype: str, values: list[Any]) -> dns.rrset.RRset:
        rdtype = dns.rdatatype.from_text(rtype)
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
        for value in values:
            if rtype in ("TXT", "SPF"):
                from dns.rdtypes.ANY.TXT import TXT

                strings = _strings(value)
                if not strings:
                    # A TXT record with no strings: not valid RDATA for dnspython, so written by hand.
                    rrset.add(_EmptyTxt(dns.rdataclass.IN, rdtype), 300)
                    continue
                rrset.add(TXT(dns.rdataclass.IN, rdtype, strings), 300)
            elif rtype == "MX":
                preference, exchange = value
                text = f"{int(preference)} {exchange if str(exchange).endswith('.') else str(exchange) + '.'}"
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), 300)
            elif rtype in ("PTR", "CNAME"):
                text = str(value) if str(value).endswith(".") else f"{value}."
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), 300)
            else:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(value)), 300)
        return rrset


class _EmptyTxt(dns.rdata.Rdata):
    """A TXT record with no character-strings (zero-length RDATA), which the suite publishes."""

    def to_text(
        self, origin: dns.name.Name | None = None, relativize: bool = True, style: Any = None, **kw: Any
    ) -> str:
        return ""

    def _to_wire(
        self, file: Any, compress: Any = None, origin: Any = None, canonicalize: bool = False
    ) -> None:
        return None
