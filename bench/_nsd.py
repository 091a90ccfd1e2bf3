"""NSD for ``bench/dns_bench.py``: its configuration for the generated zones (the lab's zone helpers,
``lab.nsd``), started in a session of its own, waited for, stopped; a free UDP+TCP port for it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NSD_CONF = """server:
  ip-address: 127.0.0.1@{port}
  do-ip4: yes
  do-ip6: no
  username: ""
  chroot: ""
  database: ""
  zonesdir: ""
  zonelistfile: "{root}/zone.list"
  xfrdfile: "{root}/xfrd.state"
  xfrdir: "{root}"
  pidfile: "{root}/nsd.pid"
  logfile: "{root}/nsd.log"
  server-count: {servers}
  verbosity: 0
  hide-version: yes
  # NSD's response rate limiting (on by default, 200 answers/s per client netblock) would drop or
  # truncate most answers of a benchmark that asks thousands of questions a second from 127.0.0.1.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
{zones}
"""


def start_nsd(root: Path, port: int, zones: list[Any]) -> subprocess.Popen[bytes]:
    """NSD for the generated zones, in a session of its own (stopped by its id, see stop_nsd)."""
    from lab.nsd import zone_config

    config = root / "nsd.conf"
    servers = max(1, min(4, os.cpu_count() or 1))
    config.write_text(NSD_CONF.format(port=port, root=root, servers=servers, zones=zone_config(zones)))
    with (root / "nsd.stderr").open("wb") as stderr:
        return subprocess.Popen(
            [shutil.which("nsd") or "nsd", "-d", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )


def wait_for(port: int, name: str, nsd: subprocess.Popen[bytes]) -> bool:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and nsd.poll() is None:
        try:
            response = dns.query.udp(dns.message.make_query(name, "SOA"), "127.0.0.1", port=port, timeout=0.3)
            if response.rcode() == dns.rcode.NOERROR and response.answer:
                return True
        except (dns.exception.DNSException, OSError):
            pass
        time.sleep(0.1)
    return False


def stop_nsd(nsd: subprocess.Popen[bytes]) -> None:
    """SIGTERM NSD's own session (its master forks the server and xfrd children), then reap it."""
    import signal

    if nsd.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(nsd.pid, signal.SIGTERM)
    try:
        nsd.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(nsd.pid, signal.SIGKILL)
        nsd.wait()


def free_port() -> int:
    from lab.ports import free_ports

    return free_ports(["127.0.0.1"], udp_too=[True])[0]
