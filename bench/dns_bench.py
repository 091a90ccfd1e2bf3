"""Benchmark: inboxcheck's DNS checks against checkdmarc's SPF + DMARC, on ~1,000 generated domains.

    python bench/dns_bench.py [--domains 1000] [--concurrency 32] [--rounds 3] [--rtt-ms 20]
                              [--checkdmarc-sample N]

What it does (see bench/README.md, "DNS"):

1. Generates the domains as zone files in a temporary directory (one zone per domain, a few shared
   "provider" zones their SPF records include, and the ``test.`` zone above them, which the DMARC
   tree walk asks last), in a mix of healthy and broken setups.
2. Creates a network namespace of its own (``ip netns add``), brings its loopback up, and re-runs
   itself inside it, where NSD (configured with the lab's own helpers, ``lab.nsd``) serves every zone
   on 127.0.0.1:53. Port 53 is what checkdmarc's ``-n`` assumes; inside the namespace nothing else
   owns it, and nothing outside is touched. Without root (or with ``--no-netns``) NSD runs on a free
   high port instead and checkdmarc gets it through its Python API (a dnspython ``Do53Nameserver``
   with that port), which gives the same lookups. With ``--rtt-ms``, the concurrency benchmark's
   delaying UDP proxy sits between both tools and NSD, adding that much to every round trip.
3. In each of ``--rounds`` rounds (which goes first alternates): audits every domain with
   inboxcheck's DNS family (MX, SPF, DKIM with 14+ selectors, DMARC, receiver readiness) at bounded
   concurrency, and checks SPF and DMARC with checkdmarc one domain after another (which is how
   checkdmarc runs; ``--checkdmarc-sample`` times only the first N, for slow paths). Reports domains
   per second, the ratio within each round and its median, and every disagreement in SPF validity,
   SPF lookup count and DMARC presence.

Only runs when invoked; it is not part of the test suite. Needs root, nsd and checkdmarc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._dns_proxy import run_proxy  # noqa: E402
from bench._netns import in_namespace  # noqa: E402
from bench._nsd import free_port, start_nsd, stop_nsd, wait_for  # noqa: E402
from inboxcheck._models import Account, Report, Status  # noqa: E402
from inboxcheck._options import CheckOptions, Family, Nameserver  # noqa: E402
from inboxcheck._presets import load_presets  # noqa: E402
from inboxcheck._runner import run_checks  # noqa: E402
from inboxcheck.dns.client import DnsClient  # noqa: E402

SOA = """$TTL 300
@ IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 86400 300
@ IN NS ns1.bench.test.
"""
CPU = {"last": 0.0}  # the CPU seconds of the last timed pass of either auditor
SPF_PERMERRORS = {
    "dns.spf.missing",
    "dns.spf.multiple",
    "dns.spf.syntax",
    "dns.spf.too_many_lookups",
    "dns.spf.void_lookups",
    "dns.spf.include_missing",
    "dns.spf.loop",
    "dns.spf.string_too_long",
}

# --------------------------------------------------------------------------------------------------
# Zones


def _dkim_record() -> str:
    """The public half of the fixtures' throwaway 2048-bit key, as zone-file TXT data."""
    text = (REPO / "fixtures" / "zones" / "dkim2048.test.zone").read_text()
    start = text.index("default._domainkey IN TXT ") + len("default._domainkey IN TXT ")
    end = text.index(")", start) + 1
    return text[start:end]


PROVIDERS = {
    # origin -> records; _spf.<origin> costs 1 + its nested includes.
    "prov-a.test": ['_spf IN TXT "v=spf1 ip4:198.51.100.0/24 -all"'],
    "prov-b.test": [
        '_spf IN TXT "v=spf1 include:n1.prov-b.test include:n2.prov-b.test -all"',
        'n1 IN TXT "v=spf1 ip4:203.0.113.0/25 -all"',
        'n2 IN TXT "v=spf1 ip4:203.0.113.128/25 -all"',
    ],
    "prov-c.test": [
        '_spf IN TXT "v=spf1 include:n1.prov-c.test include:n2.prov-c.test include:n3.prov-c.test ~all"',
        'n1 IN TXT "v=spf1 ip4:192.0.2.0/26 -all"',
        'n2 IN TXT "v=spf1 ip4:192.0.2.64/26 -all"',
        'n3 IN TXT "v=spf1 ip4:192.0.2.128/26 -all"',
    ],
}
# SPF cost of include:_spf.<provider>
PROVIDER_COST = {"prov-a.test": 1, "prov-b.test": 3, "prov-c.test": 4}

SPF_CASES = [
    "healthy",
    "provider",
    "ten",
    "eleven",
    "twelve",
    "loop",
    "include_missing",
    "two",
    "syntax",
    "none",
    "plus_all",
    "void",
    "ptr",
    "redirect",
    "macro",
    "mx_overflow",
]
DMARC_CASES = ["reject", "none", "missing", "two", "syntax", "quarantine_rua"]


def zone_for(index: int, domain: str, dkim: str) -> tuple[str, str, str]:
    """The zone text of one generated domain, and the cases it was built for."""
    spf_case = SPF_CASES[index % len(SPF_CASES)]
    dmarc_case = DMARC_CASES[(index // len(SPF_CASES)) % len(DMARC_CASES)]
    lines = [SOA, "@ IN MX 10 mail", "mail IN A 192.0.2.25", "@ IN A 192.0.2.80"]
    provider = ["prov-a.test", "prov-b.test", "prov-c.test"][index % 3]
    if spf_case == "healthy":
        lines.append('@ IN TXT "v=spf1 mx a ip4:192.0.2.0/24 -all"')
    elif spf_case == "provider":
        lines.append(f'@ IN TXT "v=spf1 include:_spf.{provider} ~all"')
    elif spf_case in ("ten", "eleven", "twelve"):
        # prov-c (4) + prov-b (3) = 7, plus a, mx, and 1-3 local includes.
        extra = {"ten": 1, "eleven": 2, "twelve": 3}[spf_case]
        local = " ".join(f"include:l{n}.{domain}" for n in range(extra))
        lines.append(f'@ IN TXT "v=spf1 a mx include:_spf.prov-c.test include:_spf.prov-b.test {local} -all"')
        lines.extend(f'l{n} IN TXT "v=spf1 ip4:192.0.2.{n + 1} -all"' for n in range(extra))
    elif spf_case == "loop":
        lines.append(f'@ IN TXT "v=spf1 include:x.{domain} -all"')
        lines.append(f'x IN TXT "v=spf1 include:y.{domain} -all"')
        lines.append(f'y IN TXT "v=spf1 include:x.{domain} -all"')
    elif spf_case == "include_missing":
        lines.append(f'@ IN TXT "v=spf1 include:gone.{domain} ~all"')
    elif spf_case == "two":
        lines.append('@ IN TXT "v=spf1 mx -all"')
        lines.append(f'@ IN TXT "v=spf1 include:_spf.{provider} -all"')
    elif spf_case == "syntax":
        lines.append('@ IN TXT "v=spf1 mx ip4:192.0.2.256 -all"')
    elif spf_case == "none":
        lines.append('@ IN TXT "some-site-verification=abc"')
    elif spf_case == "plus_all":
        lines.append('@ IN TXT "v=spf1 mx +all"')
    elif spf_case == "void":
        lines.append(f'@ IN TXT "v=spf1 a:v1.{domain} a:v2.{domain} mx:v3.{domain} ~all"')
    elif spf_case == "ptr":
        lines.append('@ IN TXT "v=spf1 ptr mx -all"')
    elif spf_case == "redirect":
        lines.append(f'@ IN TXT "v=spf1 redirect=_spf.{provider}"')
    elif spf_case == "macro":
        lines.append(f'@ IN TXT "v=spf1 exists:%{{i}}._spf.{domain} mx -all"')
    elif spf_case == "mx_overflow":
        lines.append(f'@ IN TXT "v=spf1 mx:many.{domain} -all"')
        lines.extend(f"many IN MX {n} mx{n}.{domain}." for n in range(11))
        lines.extend(f"mx{n} IN A 192.0.2.{n + 100}" for n in range(11))
    if dmarc_case == "reject":
        lines.append('_dmarc IN TXT "v=DMARC1; p=reject"')
    elif dmarc_case == "none":
        lines.append(f'_dmarc IN TXT "v=DMARC1; p=none; rua=mailto:d@{domain}"')
    elif dmarc_case == "two":
        lines.append('_dmarc IN TXT "v=DMARC1; p=none"')
        lines.append('_dmarc IN TXT "v=DMARC1; p=reject"')
    elif dmarc_case == "syntax":
        lines.append('_dmarc IN TXT "v=DMARC1; p=sometimes"')
    elif dmarc_case == "quarantine_rua":
        lines.append('_dmarc IN TXT "v=DMARC1; p=quarantine; rua=mailto:agg@prov-a.test"')
    if index % 2 == 0:
        lines.append(f"default._domainkey IN TXT {dkim}")
    return "\n".join(lines) + "\n", spf_case, dmarc_case


def generate(directory: Path, count: int) -> dict[str, tuple[str, str]]:
    dkim = _dkim_record()
    cases: dict[str, tuple[str, str]] = {}
    (directory / "test.zone").write_text(SOA)
    for origin, records in PROVIDERS.items():
        (directory / f"{origin}.zone").write_text(SOA + "\n".join(records) + "\n")
    for index in range(count):
        domain = f"b{index:04d}.test"
        text, spf_case, dmarc_case = zone_for(index, domain, dkim)
        (directory / f"{domain}.zone").write_text(text)
        cases[domain] = (spf_case, dmarc_case)
    return cases


# --------------------------------------------------------------------------------------------------
# The two auditors


@dataclass
class Verdict:
    spf_valid: bool | None  # None: could not tell
    lookups: int | None
    dmarc_present: bool | None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _account(domain: str) -> Account:
    return Account.model_validate(
        {
            "email_address": f"bench@{domain}",
            "display_name": "Bench",
            "inbox_type": "CUSTOM_SMTP",
            "smtp_host": f"mail.{domain}",
            "smtp_port": 587,
            "smtp_username": f"bench@{domain}",
            "smtp_password": "bench",
            "imap_host": f"mail.{domain}",
            "imap_port": 993,
            "imap_username": f"bench@{domain}",
            "imap_password": "bench",
        }
    )


def inboxcheck_verdict(report: Report) -> Verdict:
    spf = report.check("dns.spf")
    dmarc = report.check("dns.dmarc")
    codes = {f.code for f in spf.findings}
    spf_valid = None if spf.status is Status.ERROR else not (codes & SPF_PERMERRORS)
    lookups = spf.details.get("lookup_count")
    dmarc_codes = {f.code for f in dmarc.findings}
    dmarc_present = None if dmarc.status is Status.ERROR else "dns.dmarc.missing" not in dmarc_codes
    return Verdict(
        spf_valid,
        lookups if isinstance(lookups, int) else None,
        dmarc_present,
        detail=", ".join(sorted(codes)),
        extra={"dkim": report.check("dns.dkim").status.value},
    )


async def run_inboxcheck(
    domains: list[str], server: Nameserver, concurrency: int, dns_timeout: float
) -> tuple[dict[str, Verdict], float, int]:
    """Audit ``domains``; returns the verdicts, the seconds taken and the DNS queries sent."""
    presets = load_presets()
    options = CheckOptions(nameservers=(server,), families=frozenset({Family.DNS}), timeout=dns_timeout)
    # One DNS client for the whole run, as `inboxcheck batch` does (checkdmarc's process-wide DNS
    # cache plays the same part on its side).
    client = DnsClient(options.nameservers, timeout=dns_timeout, record=False)
    semaphore = asyncio.Semaphore(concurrency)
    results: dict[str, Verdict] = {}

    async def one(domain: str) -> None:
        async with semaphore:
            report = await run_checks(_account(domain), options=options, presets=presets, dns_client=client)
        results[domain] = inboxcheck_verdict(report)

    CPU["last"] = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(one(domain) for domain in domains))
    CPU["last"] = time.process_time() - CPU["last"]
    return results, time.perf_counter() - start, client.sent


def checkdmarc_verdict(spf: dict[str, Any], dmarc: dict[str, Any]) -> Verdict:
    error = str(spf.get("error") or "")
    lookups = spf.get("dns_lookups")
    if lookups is None and "maximum DNS lookups" in error:
        # "Parsing the SPF record requires 11/10 maximum DNS lookups"
        lookups = int(error.split("requires ", 1)[1].split("/", 1)[0])
    unknown = any(word in error.lower() for word in ("timed out", "timeout", "servfail", "refused"))
    dmarc_error = str(dmarc.get("error") or "")
    dmarc_present = bool(dmarc.get("record")) or "Multiple DMARC" in dmarc_error
    return Verdict(
        None if unknown else bool(spf.get("valid")),
        lookups if isinstance(lookups, int) else None,
        dmarc_present,
        detail=error,
    )


def run_checkdmarc(
    domains: list[str], nameserver: Any, timeout: float
) -> tuple[dict[str, Verdict], float, int]:
    """SPF and DMARC of ``domains``, one after another as checkdmarc does; verdicts, seconds, queries."""
    import dns.query
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.spf import check_spf
    from checkdmarc.utils import DNS_CACHE

    DNS_CACHE.clear()  # each timed run starts cold, like inboxcheck's fresh DNS client
    sent = 0
    original_udp, original_tcp = dns.query.udp, dns.query.tcp

    def udp(*args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        return original_udp(*args, **kwargs)

    def tcp(*args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        return original_tcp(*args, **kwargs)

    results: dict[str, Verdict] = {}
    dns.query.udp, dns.query.tcp = udp, tcp
    try:
        CPU["last"] = time.process_time()
        start = time.perf_counter()
        for domain in domains:
            spf = check_spf(domain, nameservers=[nameserver], timeout=timeout)
            dmarc = check_dmarc(domain, nameservers=[nameserver], timeout=timeout)
            results[domain] = checkdmarc_verdict(dict(spf), dict(dmarc))
        seconds = time.perf_counter() - start
        CPU["last"] = time.process_time() - CPU["last"]
    finally:
        dns.query.udp, dns.query.tcp = original_udp, original_tcp
    return results, seconds, sent


# --------------------------------------------------------------------------------------------------
# Comparison


def disagreements(
    ours: dict[str, Verdict], theirs: dict[str, Verdict], cases: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    rows = []
    for domain in sorted(ours):
        a, b = ours[domain], theirs[domain]
        spf_case, dmarc_case = cases.get(domain, ("?", "?"))
        if a.spf_valid != b.spf_valid:
            rows.append(_row(domain, "spf_valid", a.spf_valid, b.spf_valid, spf_case, a, b))
        both_counted = a.lookups is not None and b.lookups is not None
        if both_counted and a.lookups != b.lookups:
            rows.append(_row(domain, "lookups", a.lookups, b.lookups, spf_case, a, b))
        if a.dmarc_present != b.dmarc_present:
            rows.append(_row(domain, "dmarc_present", a.dmarc_present, b.dmarc_present, dmarc_case, a, b))
    return rows


def _row(domain: str, what: str, ours: Any, theirs: Any, case: str, a: Verdict, b: Verdict) -> dict[str, Any]:
    return {
        "domain": domain,
        "field": what,
        "case": case,
        "inboxcheck": ours,
        "checkdmarc": theirs,
        "inboxcheck_codes": a.detail,
        "checkdmarc_error": b.detail,
    }


# --------------------------------------------------------------------------------------------------
# Running


def _profile(args: argparse.Namespace, domains: list[str], server: Any) -> int:
    """One inboxcheck pass under cProfile: stats to ``args.profile``, the top by own time to stdout."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)  # CPU, not the wall clock a loaded machine inflates
    profiler.enable()
    _, seconds, _ = asyncio.run(run_inboxcheck(domains, server, args.concurrency, args.timeout))
    profiler.disable()
    profiler.dump_stats(args.profile)
    print(f"{len(domains)} domains in {seconds:.1f} s under the profiler, {CPU['last']:.1f} s CPU")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(45)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    return 0


def inside(args: argparse.Namespace) -> int:
    import dns.nameserver

    from lab.nsd import check_zones, discover_zones, prepare_zones

    workdir = Path(tempfile.mkdtemp(prefix="ibdns-"))
    try:
        zone_dir = workdir / "zones"
        zone_dir.mkdir()
        cases = generate(zone_dir, args.domains)
        zones = prepare_zones(discover_zones([zone_dir]), workdir / "rendered", {})
        t0 = time.perf_counter()
        check_zones(zones)
        checked = time.perf_counter() - t0
        port = 53 if args.netns else free_port()
        nsd = start_nsd(workdir, port, zones)
        proxy: subprocess.Popen[str] | None = None
        try:
            if not wait_for(port, f"b{args.domains - 1:04d}.test.", nsd):
                print((workdir / "nsd.log").read_text(errors="replace")[-2000:], file=sys.stderr)
                return 2
            domains = sorted(cases)
            if args.rtt_ms > 0:
                # A delaying UDP proxy in a process of its own: each direction held rtt/2.
                listen = free_port()
                proxy = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--proxy",
                        f"{listen}:{port}:{args.rtt_ms / 2000}",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert proxy.stdout is not None
                if proxy.stdout.readline().strip() != "ready":
                    return 2
                port = listen
            server = Nameserver(host="127.0.0.1", port=port)
            # checkdmarc is given the plain address when NSD is on 53, as its -n option would.
            their_ns: Any = "127.0.0.1" if port == 53 else dns.nameserver.Do53Nameserver("127.0.0.1", port)
            # Warm NSD and the Python imports for both sides on a few domains first.
            asyncio.run(run_inboxcheck(domains[:20], server, args.concurrency, args.timeout))
            run_checkdmarc(domains[:5], their_ns, args.timeout)
            if args.profile is not None:
                return _profile(args, domains, server)
            # Rounds, each running both auditors, the first alternating; the machine is shared, so the
            # ratio is taken within a round (same load) and the median of the rounds is reported.
            subset = domains[: args.checkdmarc_sample] if args.checkdmarc_sample > 0 else domains
            seconds: dict[str, list[float]] = {"inboxcheck": [], "checkdmarc": []}
            cpu: dict[str, list[float]] = {"inboxcheck": [], "checkdmarc": []}
            queries: dict[str, int] = {}
            for round_ in range(args.rounds):
                for name in ("inboxcheck", "checkdmarc")[:: 1 if round_ % 2 == 0 else -1]:
                    if name == "checkdmarc":
                        theirs, s, queries[name] = run_checkdmarc(subset, their_ns, args.timeout)
                    else:
                        ours, s, queries[name] = asyncio.run(
                            run_inboxcheck(domains, server, args.concurrency, args.timeout)
                        )
                    seconds[name].append(s)
                    cpu[name].append(CPU["last"])
            figures: dict[str, Any] = {
                "domains": len(domains),
                "rounds": args.rounds,
                "rtt_ms": args.rtt_ms,
                "concurrency": args.concurrency,
                "zones_checked_s": round(checked, 2),
                "nameserver": f"127.0.0.1:{port}"
                + (" (own network namespace)" if args.netns else "")
                + (f" through a proxy adding {args.rtt_ms:g} ms per round trip" if args.rtt_ms else ""),
                "inboxcheck_checks": "dns.mx, dns.spf, dns.dkim (14 selectors), dns.dmarc, dns.receivers",
                "checkdmarc_checks": "check_spf + check_dmarc, one domain after another",
            }
            for name, count in (("inboxcheck", len(domains)), ("checkdmarc", len(subset))):
                rates = [count / s for s in seconds[name]]
                figures[name] = {
                    "domains": count,
                    "domains_per_s_rounds": [round(r, 1) for r in rates],
                    "domains_per_s_median": round(statistics.median(rates), 1),
                    "domains_per_cpu_s_rounds": [round(count / c, 1) for c in cpu[name]],
                    "queries_per_domain": round(queries[name] / count, 1),
                }
            ratios = [
                (len(domains) / s) / (len(subset) / c)
                for s, c in zip(seconds["inboxcheck"], seconds["checkdmarc"], strict=True)
            ]
            figures["x_checkdmarc_rounds"] = [round(r, 2) for r in ratios]
            figures["x_checkdmarc_median"] = round(statistics.median(ratios), 2)
            # Per CPU second of the auditor's own process: what the machine's other load moves least.
            cpu_ratios = [
                (len(domains) / a) / (len(subset) / b)
                for a, b in zip(cpu["inboxcheck"], cpu["checkdmarc"], strict=True)
            ]
            figures["x_checkdmarc_per_cpu_s_rounds"] = [round(r, 2) for r in cpu_ratios]
            figures["x_checkdmarc_per_cpu_s_median"] = round(statistics.median(cpu_ratios), 2)
            all_rows = {"spf-dmarc": disagreements({d: ours[d] for d in subset}, theirs, cases)}
            figures["disagreements"] = {mode: len(rows) for mode, rows in all_rows.items()}
            figures["disagreement_rows"] = all_rows
            results = REPO / "bench" / "results"
            results.mkdir(exist_ok=True)
            (results / "dns.json").write_text(json.dumps(figures, indent=2) + "\n")
            print(json.dumps({k: v for k, v in figures.items() if k != "disagreement_rows"}, indent=2))
            for mode, rows in all_rows.items():
                print(f"\n# disagreements with checkdmarc ({mode}): {len(rows)}", file=sys.stderr)
                for row in rows:
                    print(json.dumps(row), file=sys.stderr)
            unknown = [d for d, v in ours.items() if v.spf_valid is None or v.dmarc_present is None]
            if unknown:
                print(
                    f"\n# inboxcheck could not tell for {len(unknown)} domains: {unknown[:10]}",
                    file=sys.stderr,
                )
        finally:
            if proxy is not None and proxy.stdin is not None:
                proxy.stdin.close()
                proxy.wait(timeout=10)
            stop_nsd(nsd)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument(
        "--no-netns", dest="netns", action="store_false", help="NSD on a high port, no namespace"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=0, help="round trip added by a delaying proxy")
    parser.add_argument(
        "--checkdmarc-sample", type=int, default=0, help="time checkdmarc on the first N domains only"
    )
    parser.add_argument(
        "--profile", type=Path, help="one inboxcheck pass under cProfile (CPU), stats here; no rounds"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proxy", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.proxy:
        asyncio.run(run_proxy(args.proxy))
        return 0
    if shutil.which("nsd") is None:
        print("nsd is not installed (see scripts/install-system-deps.sh)", file=sys.stderr)
        return 2
    if args.inside or not args.netns:
        return inside(args)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("no root or no `ip`: running without a network namespace", file=sys.stderr)
        args.netns = False
        return inside(args)
    return in_namespace("inboxcheck-bench", str(Path(__file__).resolve()), argv)


if __name__ == "__main__":
    raise SystemExit(main())
