"""NSD, authoritative for the fixture zones (plus extra zone dirs) on 127.0.0.1:PORT."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab.procs import ForegroundDaemon, find_binary, log_tail
from lab.templates import TemplateError, has_placeholders, render, render_file
from lab.types import LabError

ZONE_SUFFIX = ".zone"
_CHECK_TIMEOUT = 30.0

# Zones the lab provides when no fixture does: the "test." apex makes parent-domain lookups
# (DMARC's organisational domain) answer NXDOMAIN instead of REFUSED, and the reverse zone gives
# loopback addresses their PTR names.
_GENERATED_ZONES = {
    "test": """$TTL 300
@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 3600 600 86400 300
@ IN NS ns1.lab.test.
""",
    "127.in-addr.arpa": """$TTL 300
@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 3600 600 86400 300
@ IN NS ns1.lab.test.
1.0.0 IN PTR mail.lab.test.
2.0.0 IN PTR imap2.lab.test.
3.0.0 IN PTR dynamic-127-0-0-3.isp.test.
""",
}


class ZoneError(LabError):
    """A zone file is broken, duplicated or uses an unknown placeholder."""


@dataclass(frozen=True)
class Zone:
    """One zone NSD serves: its origin (no trailing dot) and the file NSD reads."""

    origin: str
    file: Path
    source: Path  # the file as found (differs from ``file`` when placeholders were rendered)


def discover_zones(directories: Sequence[Path]) -> dict[str, Path]:
    """Map origin -> file for every ``*.zone`` in ``directories``; a zone found twice is an error."""
    found: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            raise ZoneError(f"zone directory {directory} does not exist")
        for path in sorted(directory.glob(f"*{ZONE_SUFFIX}")):
            origin = path.name[: -len(ZONE_SUFFIX)].rstrip(".").lower()
            if origin in found:
                raise ZoneError(f"zone {origin!r} is defined twice: {found[origin]} and {path}")
            found[origin] = path
    return found


def prepare_zones(sources: Mapping[str, Path], out_dir: Path, values: Mapping[str, object]) -> list[Zone]:
    """Render files that use ``{{placeholders}}`` (e.g. lab ports in SRV records) into ``out_dir``,
    and add the generated zones no fixture provides. Files without placeholders are served
    in place, so a thousand benchmark zones cost no copying."""
    out_dir.mkdir(parents=True, exist_ok=True)
    zones: list[Zone] = []
    for origin, path in sources.items():
        text = path.read_text()
        if not has_placeholders(text):
            zones.append(Zone(origin, path, path))
            continue
        try:
            rendered = render(text, values, source=str(path))
        except TemplateError as exc:
            raise ZoneError(str(exc)) from exc
        target = out_dir / path.name
        target.write_text(rendered)
        zones.append(Zone(origin, target, path))
    for origin, text in _GENERATED_ZONES.items():
        if origin not in sources:
            target = out_dir / f"{origin}{ZONE_SUFFIX}"
            target.write_text(text)
            zones.append(Zone(origin, target, target))
    return zones


def check_zones(zones: Sequence[Zone]) -> None:
    """Run ``nsd-checkzone`` on every zone, in parallel, and report every broken one.

    NSD itself loads a broken zone "with errors" and keeps serving, which would turn a typo in a
    fixture into baffling test failures; this makes it a clear start error instead.
    """
    workers = min(8, max(1, len(zones)), (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(_check_zone, zones) if p is not None]
    if problems:
        raise ZoneError("broken zone file(s):\n" + "\n".join(problems))


def _check_zone(zone: Zone) -> str | None:
    result = subprocess.run(
        [find_binary("nsd-checkzone"), zone.origin, str(zone.file)],
        capture_output=True,
        text=True,
        timeout=_CHECK_TIMEOUT,
        check=False,
    )
    if result.returncode == 0:
        return None
    message = (result.stdout + result.stderr).strip()
    return f"{zone.source} (zone {zone.origin}.): {message}"


def zone_config(zones: Sequence[Zone]) -> str:
    """The ``zone:`` clauses of nsd.conf."""
    return "\n".join(f'zone:\n  name: "{z.origin}."\n  zonefile: "{z.file}"\n' for z in zones)


class NsdServer:
    """``nsd -d`` in its own session, so its forked server and xfrd children are easy to sweep."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.config_file = root / "nsd.conf"
        self.log_file = log_dir / "nsd.log"
        self.port = 0
        self.daemon = ForegroundDaemon("nsd", log_dir / "nsd.stderr")

    def configure(self, *, port: int, zones: Sequence[Zone]) -> None:
        """Write nsd.conf for ``zones`` on 127.0.0.1:``port``."""
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.root / "xfr").mkdir(exist_ok=True)
        self.port = port
        values = {
            "port": port,
            "root": self.root,
            "log_file": self.log_file,
            "zones": zone_config(zones),
        }
        self.config_file.write_text(render_file("nsd.conf.tmpl", values))

    def start(self) -> None:
        """Launch NSD in the foreground (``-d``): the lab owns its pid and session."""
        self.daemon.start([find_binary("nsd"), "-d", "-c", str(self.config_file)], cwd=self.root)

    def answers(self, name: str) -> bool:
        """Whether NSD answers an SOA query for ``name`` authoritatively (UDP)."""
        query = dns.message.make_query(name, dns.rdatatype.SOA)
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.3)
        except (dns.exception.DNSException, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    def logs(self) -> str:
        """Tails of NSD's log and stderr."""
        return f"{log_tail(self.daemon.output_file, 10)}\n{log_tail(self.log_file)}"
