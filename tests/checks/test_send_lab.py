"""The send test against the lab's real mail system: Postfix with OpenDKIM signing lab.test mail,
delivery over LMTP into Dovecot, a Sieve rule filing marked mail into Junk, NSD for every lookup.

What the report says is checked against the mailbox itself over IMAP (imaplib, not inboxcheck).
"""

from __future__ import annotations

import imaplib
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inboxcheck._models import Account, Report, Severity, Status
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._runner import run_checks
from inboxcheck.checks import dns, send
from inboxcheck.checks.login import imap, smtp
from inboxcheck.cli import cli

pytestmark = pytest.mark.lab

SPECS = [*smtp.CHECKS, *imap.CHECKS, *send.CHECKS]
TOKEN = re.compile(r"ic[0-9a-f]{20}")


def _options(lab: Any, **extra: Any) -> CheckOptions:
    address, port = lab.nameserver
    values: dict[str, Any] = {
        "timeout": 5.0,
        "nameservers": (parse_nameserver(f"{address}:{port}"),),
        "ca_file": lab.ca_file,
        "send_test": True,
        "send_timeout": 15.0,
    }
    return CheckOptions(**(values | extra))


async def _send(lab: Any, user: str = "alice@lab.test", **extra: Any) -> Report:
    payload = lab.account(user, smtp="submission", imap="imaps")
    return await run_checks(Account.model_validate(payload), options=_options(lab, **extra), specs=SPECS)


def _mailbox(lab: Any, user: str, folder: str, token: str) -> list[bytes]:
    """The numbers of the messages in ``folder`` carrying ``token``, asked over plain imaplib."""
    endpoint = lab.imap["imaps"]
    account = lab.user(user)
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    with imaplib.IMAP4_SSL(endpoint.address, endpoint.port, ssl_context=context, timeout=10) as client:
        client.login(account.username, account.password)
        client.select(folder, readonly=True)
        _, data = client.search(None, "HEADER", "X-Inboxcheck-Token", token)
        return list(data[0].split())


def _codes(report: Report, name: str) -> list[str]:
    return [f.code for f in report.check(name).findings]


async def test_signed_message_lands_in_inbox_is_verified_and_deleted(lab: Any) -> None:
    report = await _send(lab)
    for name in ("send.permission", "send.message", "send.find", "send.verify", "send.cleanup"):
        assert report.check(name).status is Status.PASS, report.check(name)
    find = report.check("send.find")
    assert find.details["folder"] == "INBOX"
    assert find.details["waited_with"] == "idle"
    verify = report.check("send.verify")
    dkim: Any = verify.details["dkim"]
    assert [(d["d"], d["s"], d["result"], d["aligned"]) for d in dkim] == [
        ("lab.test", lab.dkim_selector, "pass", True)
    ]
    assert _codes(report, "send.verify") == ["send.spf.no_relay_hop"]
    token = str(report.check("send.message").details["token"])
    # Gone from the mailbox afterwards, asked over IMAP by another client.
    assert _mailbox(lab, "alice@lab.test", "INBOX", token) == []
    deleted: Any = report.check("send.cleanup").details["deleted"]
    assert deleted == [{"folder": "INBOX", "messages": 1, "flagged": True, "expunged": True}]


async def test_a_selector_the_dns_check_did_not_know_is_named_and_clears_missing(lab: Any) -> None:
    options = _options(lab)
    payload = lab.account("alice@lab.test", smtp="submission", imap="imaps")
    specs = [*(spec for spec in dns.CHECKS if spec.name == "dns.dkim"), *SPECS]
    report = await run_checks(Account.model_validate(payload), options=options, specs=specs)
    # Live evidence outranks the guess: the signed message clears "no key found".
    assert _codes(report, "dns.dkim") == ["dns.dkim.seen_in_message"]
    assert report.check("dns.dkim").status is Status.PASS
    assert report.check("dns.dkim").findings[0].evidence["selector"] == lab.dkim_selector
    finding = next(f for f in report.check("send.verify").findings if f.code == "send.dkim.selector_unknown")
    assert finding.severity is Severity.INFO
    assert (finding.evidence["selector"], finding.evidence["d"]) == (lab.dkim_selector, "lab.test")
    # Told the selector, the DNS check finds the key.
    told = await run_checks(
        Account.model_validate(payload),
        options=_options(lab, dkim_selectors=(lab.dkim_selector,)),
        specs=specs,
    )
    assert "dns.dkim.missing" not in _codes(told, "dns.dkim")
    assert "send.dkim.selector_unknown" not in _codes(told, "send.verify")


async def test_unsigned_domain_shows_the_unsigned_case(lab: Any) -> None:
    report = await _send(lab, "carol@unsigned.test")
    assert report.check("send.find").details["folder"] == "INBOX"
    verify = report.check("send.verify")
    assert verify.status is Status.FAIL
    finding = next(f for f in verify.findings if f.code == "send.dkim.unsigned")
    assert finding.severity is Severity.FAIL
    assert verify.details["dkim"] == []
    assert report.check("send.cleanup").status is Status.PASS


async def test_the_sieve_rule_files_a_marked_message_in_junk_and_the_report_says_so(lab: Any) -> None:
    report = await _send(lab, test_headers=(("X-Lab-Junk", "yes"),))
    find = report.check("send.find")
    assert find.status is Status.FAIL
    assert [f.code for f in find.findings] == ["send.find.junk"]
    assert find.details["folder"] == "Junk" and find.details["junk"] is True
    assert find.findings[0].evidence["found_by"] == "special-use"
    # Verified where it landed, and deleted from there.
    assert report.check("send.verify").details["dmarc"] == {
        "result": "pass",
        "policy": "quarantine",
        "dkim_aligned": True,
        "spf_aligned": False,
    }
    token = str(report.check("send.message").details["token"])
    assert _mailbox(lab, "alice@lab.test", "Junk", token) == []
    deleted: Any = report.check("send.cleanup").details["deleted"]
    assert [d["folder"] for d in deleted] == ["Junk"]


async def test_keep_test_message_leaves_it_in_the_mailbox(lab: Any) -> None:
    report = await _send(lab, "bob@lab.test", keep_test_message=True)
    assert report.check("send.find").status is Status.PASS
    cleanup = report.check("send.cleanup")
    assert cleanup.status is Status.SKIPPED and "--keep-test-message" in cleanup.summary
    token = str(report.check("send.message").details["token"])
    assert len(_mailbox(lab, "bob@lab.test", "INBOX", token)) == 1
    _delete(lab, "bob@lab.test", token)


def _delete(lab: Any, user: str, token: str) -> None:
    """Leave the shared lab's mailbox as other tests expect it."""
    endpoint = lab.imap["imaps"]
    account = lab.user(user)
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    with imaplib.IMAP4_SSL(endpoint.address, endpoint.port, ssl_context=context, timeout=10) as client:
        client.login(account.username, account.password)
        client.select("INBOX")
        _, data = client.search(None, "HEADER", "X-Inboxcheck-Token", token)
        for number in data[0].split():
            client.store(number, "+FLAGS", "\\Deleted")
        client.expunge()


def test_no_password_or_token_in_any_output_but_the_token_field(lab: Any, tmp_path: Path) -> None:
    payload = lab.account("alice@lab.test", smtp="submission", imap="imaps")
    path = tmp_path / "account.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    address, port = lab.nameserver
    args = [
        "check",
        str(path),
        "--send-test",
        "--send-timeout",
        "15",
        "--timeout",
        "5",
        "--nameserver",
        f"{address}:{port}",
        "--ca-file",
        str(lab.ca_file),
        "--only",
        "smtp",
        "--only",
        "imap",
    ]
    runner = CliRunner()
    as_json = runner.invoke(cli, [*args, "--format", "json"], env={}, catch_exceptions=False)
    as_text = runner.invoke(cli, [*args, "-v"], env={}, catch_exceptions=False)
    report = json.loads(as_json.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["send.cleanup"]["status"] == "pass", checks["send.cleanup"]
    token = checks["send.message"]["details"]["token"]
    assert as_json.stdout.count(token) == 1
    for result in (as_json, as_text):
        for stream in (result.stdout, result.stderr):
            assert payload["smtp_password"] not in stream
            assert not TOKEN.search(stream.replace(token, "", 1) if result is as_json else stream)
    assert "send.find" in as_text.stdout or "Test message found" in as_text.stdout


async def test_to_another_mailbox_found_and_deleted_with_its_own_login(lab: Any) -> None:
    recipient = Account.model_validate(lab.account("bob@lab.test", smtp="submission", imap="imaps"))
    report = await _send(lab, send_to_account=recipient)
    assert report.check("send.message").details["recipient"] == "bob@lab.test"
    find = report.check("send.find")
    assert find.status is Status.PASS and find.details["authenticated_as"] == "bob@lab.test", find
    assert report.check("send.verify").details["dkim"][0]["result"] == "pass"  # type: ignore[index,call-overload]
    assert report.check("send.cleanup").status is Status.PASS
    token = str(report.check("send.message").details["token"])
    assert _mailbox(lab, "bob@lab.test", "INBOX", token) == []
    text = report.model_dump_json()
    assert recipient.imap_password.get_secret_value() not in text


def test_to_account_on_the_command_line_keeps_its_password_out(lab: Any, tmp_path: Path) -> None:
    sender, recipient = (tmp_path / "alice.json", tmp_path / "bob.json")
    sender.write_text(
        json.dumps(lab.account("alice@lab.test", smtp="submission", imap="imaps")), encoding="utf-8"
    )
    bob = lab.account("bob@lab.test", smtp="submission", imap="imaps")
    recipient.write_text(json.dumps(bob), encoding="utf-8")
    address, port = lab.nameserver
    args = [
        "check",
        str(sender),
        "--send-test",
        "--to-account",
        str(recipient),
        "--send-timeout",
        "15",
        "--nameserver",
        f"{address}:{port}",
        "--ca-file",
        str(lab.ca_file),
        "--only",
        "smtp",
        "--only",
        "imap",
        "--format",
        "json",
    ]
    result = CliRunner().invoke(cli, args, env={}, catch_exceptions=False)
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["send.find"]["details"]["authenticated_as"] == "bob@lab.test"
    assert checks["send.cleanup"]["status"] == "pass"
    assert bob["imap_password"] not in result.stdout + result.stderr
