"""Start-up: a command loads only what it and the account need (how fast is in bench/, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import Lab
from tests.helpers import google_payload

# Run the CLI in a fresh interpreter and list the inboxcheck modules it loaded.
_PROBE = (
    "import sys\n"
    "from inboxcheck.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
)

# What no help text needs: the models, the event loop, TLS, DNS, the mail clients, the data files.
_HEAVY = (
    "pydantic",
    "pydantic_core",
    "asyncio",
    "ssl",
    "dns",
    "aiosmtplib",
    "aioimaplib",
    "tomllib",
    "publicsuffixlist",
    "inboxcheck._runner",
    "inboxcheck._check",
    "inboxcheck._models",
    "inboxcheck._presets",
)

# Loaded only by what asks for them: discovery (a partial payload, discover), the send test
# (--send-test), the blocklists (--deliverability), the platform client (connect), other commands.
_NEVER_FOR_A_PLAIN_CHECK = (
    "inboxcheck.discovery.run",
    "inboxcheck.discovery.gather",
    "inboxcheck.discovery.sources",
    "inboxcheck.discovery.model",
    "inboxcheck.checks.send.smtp",
    "inboxcheck.checks.send.imap",
    "inboxcheck.checks.send.verify",
    "inboxcheck.checks.send.message",
    "inboxcheck._blocklists",
    "inboxcheck.checks.dns.blocklists",
    "inboxcheck.checks.dns.fcrdns",
    "inboxcheck.platform.client",
    "inboxcheck.platform.classify",
    "inboxcheck._diagnose",
    "inboxcheck.cli.connect",
    "inboxcheck.cli.diagnose",
    "inboxcheck.cli.discover",
)


def _loaded(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_an_offline_check_loads_no_network_check_nor_discovery(tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    account.write_text(json.dumps(google_payload()), encoding="utf-8")
    loaded = _loaded("check", str(account), "--only", "account", "--format", "json")
    assert "inboxcheck.checks.account" in loaded
    unwanted = {*_NEVER_FOR_A_PLAIN_CHECK, "inboxcheck.checks.dns", "inboxcheck.checks.login.smtp"}
    assert not loaded & unwanted, loaded & unwanted


@pytest.mark.lab
def test_a_full_check_of_a_lab_account_loads_only_what_it_runs(lab: Lab, tmp_path: Path) -> None:
    account = tmp_path / "account.json"
    account.write_text(json.dumps(lab.account("alice@lab.test", smtp="submission", imap="imaps")))
    host, port = lab.nameserver
    common = ["check", str(account), "--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file)]
    loaded = _loaded(*common, "--format", "json")
    assert {"inboxcheck.checks.dns", "inboxcheck.checks.login.smtp", "inboxcheck.checks.login.imap"} <= loaded
    assert not loaded & set(_NEVER_FOR_A_PLAIN_CHECK), loaded & set(_NEVER_FOR_A_PLAIN_CHECK)
    deliverability = _loaded(*common, "--only", "dns", "--deliverability", "--format", "json")
    assert {"inboxcheck._blocklists", "inboxcheck.checks.dns.blocklists"} <= deliverability


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("check", "--help"), ("connect", "--help")])
def test_help_and_version_load_nothing_heavy(args: tuple[str, ...]) -> None:
    loaded = _loaded(*args)
    assert "inboxcheck.cli" in loaded
    assert not loaded & set(_HEAVY), loaded & set(_HEAVY)


@pytest.mark.lab
def test_a_check_reads_the_shipped_data_parsed_ahead_and_one_top_level_name_of_the_suffix_list(
    lab: Lab, tmp_path: Path
) -> None:
    # The presets come from parsed-data.json (no TOML parser loaded), and the Public Suffix List is
    # parsed only under the top-level names asked (here "test"), never whole.
    account = tmp_path / "account.json"
    account.write_text(json.dumps(lab.account("alice@lab.test", smtp="submission", imap="imaps")))
    host, port = lab.nameserver
    probe = (
        "import json, sys\n"
        "from inboxcheck.cli import main\n"
        "from inboxcheck.checks.dns import treewalk\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "lists = len(treewalk._cut_lists) + treewalk._parse_whole_list.cache_info().currsize\n"
        "reads = treewalk._read_bundled_rules.cache_info().misses\n"
        "print(json.dumps([sorted(sys.modules), lists, reads]), file=sys.stderr)\n"
    )
    args = ["check", str(account), "--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file)]
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    modules, lists, reads = json.loads(proc.stderr.strip().splitlines()[-1])
    assert json.loads(proc.stdout)["checks"], proc.stderr
    assert "inboxcheck._presets" in modules
    assert "tomllib" not in modules
    assert "publicsuffixlist" in modules  # the DMARC walk asked whether lab.test is a suffix
    assert (lists, reads) == (1, 1)


@pytest.mark.lab
def test_the_logins_alone_load_no_dns_check_nor_record_parser(lab: Lab, tmp_path: Path) -> None:
    # The same-mailbox check shares the DNS lookups and the DMARC tree walk; the DNS family's checks
    # (and the SPF and DKIM parsers) load only when it runs.
    account = tmp_path / "account.json"
    account.write_text(json.dumps(lab.account("alice@lab.test", smtp="submission", imap="imaps")))
    host, port = lab.nameserver
    loaded = _loaded(
        *("check", str(account), "--nameserver", f"{host}:{port}", "--ca-file", str(lab.ca_file)),
        *("--only", "smtp", "--only", "imap", "--format", "json"),
    )
    assert {"inboxcheck.checks.login.same_mailbox", "inboxcheck.checks.dns.treewalk"} <= loaded
    dns_family = {
        "inboxcheck.checks.dns.family",
        "inboxcheck.checks.dns.mx",
        "inboxcheck.checks.dns.spf",
        "inboxcheck.checks.dns.dkim",
        "inboxcheck.checks.dns.dmarc",
        "inboxcheck.checks.dns.receivers",
        "inboxcheck.dns.spf_eval",
        "inboxcheck.dns.records.dkim",
    }
    assert not loaded & dns_family, loaded & dns_family
