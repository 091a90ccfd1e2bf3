"""Queries per ``check_host``: inboxcheck's evaluator against pyspf on the same zones.

Claim (issue 23): on a healthy domain with a provider include, ``check_host`` costs at most as many
DNS queries as pyspf makes for the same case. Both ask the same DNS server on loopback (the SPF
suite's server of the tests, tests/spf_suite.py, run in a thread of its own), which counts the
queries it receives; pyspf (the ``bench`` extra) is pointed at it through its ``DNSLookup`` hook,
with dnspython as its own default lookup does.

Run it: ``python bench/spf_bench.py`` (exit 0 when inboxcheck never asks more than pyspf).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.spf_suite import SuiteDnsServer

# A Google Workspace-style domain (three netblock records behind _spf.google.com), a Microsoft 365
# one (one nested include), and a domain that sends from its MX hosts.
ZONE: Final[dict[str, list[Any]]] = {
    "google-style.test": [{"TXT": "v=spf1 include:_spf.google.com ~all"}],
    "_spf.google.com": [
        {
            "TXT": "v=spf1 include:_netblocks.google.com include:_netblocks2.google.com "
            "include:_netblocks3.google.com ~all"
        }
    ],
    "_netblocks.google.com": [{"TXT": "v=spf1 ip4:198.51.1.0/24 ip6:2001:db8:1::/48 ~all"}],
    "_netblocks2.google.com": [{"TXT": "v=spf1 ip4:198.51.2.0/24 ip6:2001:db8:2::/48 ~all"}],
    "_netblocks3.google.com": [{"TXT": "v=spf1 ip4:198.51.3.0/24 ip6:2001:db8:3::/48 ~all"}],
    "m365.test": [{"TXT": "v=spf1 include:spf.protection.outlook.com -all"}],
    "spf.protection.outlook.com": [
        {"TXT": "v=spf1 ip4:203.0.113.0/25 include:spfd.protection.outlook.com -all"}
    ],
    "spfd.protection.outlook.com": [{"TXT": "v=spf1 ip4:203.0.113.128/25 -all"}],
    "mxsender.test": [
        {"TXT": "v=spf1 mx a:out.mxsender.test -all"},
        {"MX": [10, "mx1.mxsender.test"]},
        {"MX": [20, "mx2.mxsender.test"]},
    ],
    "mx1.mxsender.test": [{"A": "192.0.2.11"}],
    "mx2.mxsender.test": [{"A": "192.0.2.12"}],
    "out.mxsender.test": [{"A": "192.0.2.20"}],
}

CASES: Final = [
    ("google-style.test, pass in the 3rd netblock", "198.51.3.7", "google-style.test"),
    ("google-style.test, softfail", "192.0.2.99", "google-style.test"),
    ("m365.test, pass in the nested include", "203.0.113.200", "m365.test"),
    ("mxsender.test, pass by a:", "192.0.2.20", "mxsender.test"),
]


class _ServerThread:
    def __init__(self) -> None:
        self.server = SuiteDnsServer()
        self.server.load(ZONE)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.__aenter__())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> SuiteDnsServer:
        self.thread.start()
        self.ready.wait(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _pyspf(port: int, ip: str, domain: str) -> tuple[str, int]:
    import dns.resolver
    import spf  # pyspf

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    asked = 0

    def lookup(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> list[Any]:
        nonlocal asked
        asked += 1
        out: list[Any] = []
        try:
            for rdata in resolver.resolve(name, qtype, lifetime=timeout):
                if qtype in ("A", "AAAA"):
                    out.append(((name, qtype), rdata.address))
                elif qtype == "MX":
                    out.append(((name, qtype), (rdata.preference, rdata.exchange)))
                elif qtype == "PTR":
                    out.append(((name, qtype), rdata.target.to_text(True)))
                elif qtype in ("TXT", "SPF"):
                    out.append(((name, qtype), rdata.strings))
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            pass
        return out

    spf.DNSLookup = lookup
    result = spf.query(i=ip, s=f"postmaster@{domain}", h="mail.example").check()
    return str(result[0]), asked


def main() -> int:
    import inboxcheck

    worse = 0
    rows: list[str] = []
    with _ServerThread() as server:
        for label, ip, domain in CASES:
            before = server.queries
            ours = inboxcheck.check_host_sync(ip, domain, nameservers=[server.nameserver], timeout=5)
            ours_sent = server.queries - before
            before = server.queries
            theirs, _asked = _pyspf(server.port, ip, domain)
            theirs_sent = server.queries - before
            if ours.result.value != theirs:
                print(f"{label}: results differ: inboxcheck {ours.result.value}, pyspf {theirs}")
                return 2
            worse += ours_sent > theirs_sent
            rows.append(f"| {label} | {ours.result.value} | {ours_sent} | {theirs_sent} |")
    print("| case | result | inboxcheck queries | pyspf queries |")
    print("| --- | --- | ---: | ---: |")
    print("\n".join(rows))
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
