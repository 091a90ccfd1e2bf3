"""A local resource shortage is never the account's fault.

With few files allowed (RLIMIT_NOFILE, ``ulimit -n``) and a large --concurrency, a batch checks only
as many accounts at once as the limit allows, and says so once; a connection that still cannot be
opened for want of descriptors is ``run.resources`` (error, could not tell), never "no route". Both
run in a subprocess whose limit is lowered, so that this test process keeps its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.peers import Peer, PeerCerts, PeerConn, serving_in_thread
from tests.scenarios import ImapScript, SmtpScript, base_payload, free_port

if TYPE_CHECKING:
    from lab import Lab

ACCOUNTS = 200
# Files the subprocess may open: fewer than the SMTP and IMAP connections of the 100 accounts that
# --per-host 100 lets run at once.
LIMIT = 160


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


_WITH_LIMIT = """
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, hard))
from inboxcheck.cli import main
main(sys.argv[1:])
"""


def test_a_batch_beyond_the_file_limit_is_bounded_and_no_account_is_blamed(
    tmp_path: Path, certs: PeerCerts
) -> None:
    script = SmtpScript(tls=certs.server_context())
    mailbox = ImapScript(tls=certs.server_context(), implicit=True)

    async def slow_greeting(conn: PeerConn) -> None:
        await asyncio.sleep(0.3)  # connections pile up, as against a real server far away
        await script(conn)

    batch = tmp_path / "accounts.jsonl"
    ca_file = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    log = tmp_path / "results.jsonl"
    with (
        serving_in_thread(lambda: Peer(slow_greeting)) as server,
        serving_in_thread(lambda: Peer(mailbox, tls=certs.server_context())) as imap_server,
    ):
        user = "u{}@peer.test".format
        lines = [
            json.dumps(
                base_payload(
                    email_address=user(n),
                    smtp_username=user(n),
                    imap_username=user(n),
                    smtp_port=server.port,
                    imap_port=imap_server.port,
                )
            )
            for n in range(ACCOUNTS)
        ]
        batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
        command = [
            sys.executable,
            "-c",
            _WITH_LIMIT.format(limit=LIMIT),
            "check",
            "--batch",
            str(batch),
            "--output",
            str(log),
            "--only",
            "smtp",
            "--only",
            "imap",
            "--concurrency",
            "1000",
            "--per-host",
            "100",
            "--ca-file",
            str(ca_file),
            "--timeout",
            "20",
            "--deadline",
            "120",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("not 1000") == 1, result.stderr  # said once
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    codes = [
        finding["code"]
        for record in records
        if record.get("report")
        for check in record["report"]["checks"]
        for finding in check["findings"]
    ]
    assert len([r for r in records if r.get("report")]) == ACCOUNTS
    assert "smtp.connect.failed" not in codes  # "no route" for accounts beyond the limit before
    assert "imap.connect.failed" not in codes
    assert "run.resources" not in codes


_EXHAUSTED = """
import asyncio, json, os, resource, ssl, sys
from inboxcheck._models import Account
from inboxcheck._options import CheckOptions
from inboxcheck._presets import load_presets
from inboxcheck._runner import run_checks
from inboxcheck.checks.login import smtp


async def main():
    account = Account.model_validate(json.loads(sys.argv[1]))
    context, presets = ssl.create_default_context(), load_presets()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    options = CheckOptions(timeout=2, deadline=10)
    report = await run_checks(
        account, options=options, ssl_context=context, presets=presets, specs=smtp.CHECKS
    )
    for fd in held:
        os.close(fd)
    print(json.dumps([[f.code, f.severity.value] for f in report.findings()]))


asyncio.run(main())
"""


def test_no_descriptor_left_is_run_resources_not_the_accounts_fault() -> None:
    payload = base_payload(smtp_port=free_port())
    command = [sys.executable, "-c", _EXHAUSTED, json.dumps(payload)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert findings == [["run.resources", "error"]]  # smtp.connect.failed ("no route") before


async def test_a_check_stopped_by_a_local_shortage_is_run_resources_not_a_bug() -> None:
    import errno
    import os

    from inboxcheck._check import CheckContext, CheckSpec, Outcome
    from inboxcheck._models import Account, Status
    from inboxcheck._options import Family
    from inboxcheck._runner import run_checks

    async def out_of_files(ctx: CheckContext) -> Outcome:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    async def other_os_error(ctx: CheckContext) -> Outcome:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    specs = [
        CheckSpec("test.files", "Files", Family.ACCOUNT, out_of_files),
        CheckSpec("test.other", "Other", Family.ACCOUNT, other_os_error),
    ]
    report = await run_checks(Account.model_validate(base_payload()), specs=specs)
    files = report.check("test.files")
    assert files.status is Status.ERROR
    assert [f.code for f in files.findings] == ["run.resources"]  # internal.bug before
    assert files.traceback is None
    assert [f.code for f in report.check("test.other").findings] == ["internal.bug"]


_DNS_EXHAUSTED = """
import asyncio, json, os, resource, sys
from inboxcheck._models import Account
from inboxcheck._options import CheckOptions, Family, Nameserver
from inboxcheck._presets import load_presets
from inboxcheck._runner import run_checks
from inboxcheck.dns.client import DnsClient


def findings(report):
    return {c.name: [[f.code, f.severity.value] for f in c.findings] for c in report.checks}


async def main():
    account = Account.model_validate(json.loads(sys.argv[1]))
    server = Nameserver(host=sys.argv[2], port=int(sys.argv[3]))
    options = CheckOptions(
        nameservers=(server,),
        families=frozenset({Family.DNS, Family.SMTP}),
        deliverability=True,
        timeout=2,
        deadline=20,
    )
    presets = load_presets()
    # A first run imports what a run imports as it goes, while files can still be opened.
    await run_checks(account, options=options, presets=presets)
    client = DnsClient(options.nameservers, timeout=options.timeout)  # shared, as a batch shares it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    short = await run_checks(account, options=options, presets=presets, dns_client=client)
    for fd in held:
        os.close(fd)
    after = await run_checks(account, options=options, presets=presets, dns_client=client)
    print(json.dumps({"short": findings(short), "after": findings(after)}))


asyncio.run(main())
"""


@pytest.mark.lab
def test_no_descriptor_for_a_dns_lookup_is_run_resources_not_a_missing_record(lab: Lab) -> None:
    """nomx.test has no MX and no SPF (fail), and its SMTP host no address: with no descriptor left
    for the lookups, none of that may be said (dns.unavailable, "check the DNS server", before);
    the deliverability checks (reverse DNS, blocklists) could not tell either."""
    address = "a@nomx.test"
    payload = base_payload(
        email_address=address, smtp_username=address, imap_username=address, smtp_host="smtp.nomx.test"
    )
    host, port = lab.nameserver
    command = [sys.executable, "-c", _DNS_EXHAUSTED, json.dumps(payload), host, str(port)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    short, after = runs["short"], runs["after"]
    for name in ("dns.mx", "dns.spf", "dns.dkim", "dns.dmarc", "dns.receivers", "smtp.login", "dns.fcrdns"):
        assert short[name] == [["run.resources", "error"]], (name, short[name])
    # One for each list asked (and the SMTP host's address): each could not be sent.
    assert short["dns.blocklists"]
    assert {tuple(f) for f in short["dns.blocklists"]} == {("run.resources", "error")}
    # The shortage was not remembered as the domain's answer: once files could be opened again, the
    # same client asked again and heard the real (failing) answers.
    assert ["dns.mx.missing", "fail"] in after["dns.mx"]
    assert ["dns.spf.missing", "fail"] in after["dns.spf"]
    assert ["smtp.connect.unresolvable", "fail"] in after["smtp.login"]
