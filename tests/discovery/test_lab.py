"""Discovery against the lab's real servers: SRV records served by NSD, logins at Postfix and
Dovecot, the create call at the API double. The servers' own logs prove where a password went."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inboxcheck._endpoint import TlsMode
from inboxcheck._models import Verdict
from inboxcheck.cli import cli
from inboxcheck.discovery import CredentialUse, Discovery, MailProtocol, ProbeResult, SourceKind, discover
from lab import Lab
from lab.api_double import ApiDouble

pytestmark = pytest.mark.lab

KEY = "cs_test_" + "k" * 24


def closed_port() -> int:
    """A loopback port nothing listens on: autoconfig is then absent, whatever the lab serves."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nameserver(lab: Lab) -> str:
    address, port = lab.nameserver
    return f"{address}:{port}"


async def run(lab: Lab, address: str, *, autoconfig_port: int | None = None, **kwargs: Any) -> Discovery:
    return await discover(
        address,
        nameservers=[nameserver(lab)],
        ca_file=lab.ca_file,
        timeout=3,
        deadline=30,
        autoconfig_port=autoconfig_port or closed_port(),
        **kwargs,
    )


def logs(lab: Lab) -> str:
    return "\n".join(
        Path(path).read_text(errors="replace")
        for name, path in lab.info()["logs"].items()
        if Path(path).exists() and name.startswith(("postfix", "dovecot"))
    )


async def test_srv_records_alone_give_a_pair_that_logs_in(lab: Lab) -> None:
    alice = lab.user("alice")
    result = await run(lab, alice.email, smtp_password=alice.password)
    assert result.verdict is Verdict.PASS, result.findings
    smtp, imap = result.chosen(MailProtocol.SMTP), result.chosen(MailProtocol.IMAP)
    assert smtp is not None and imap is not None
    assert (smtp.host, smtp.port, smtp.tls) == (
        "mail.lab.test",
        lab.smtp["submission"].port,
        TlsMode.STARTTLS,
    )
    assert (imap.host, imap.port, imap.tls) == ("mail.lab.test", lab.imap["imaps"].port, TlsMode.IMPLICIT)
    assert smtp.source is SourceKind.SRV and smtp.result is ProbeResult.LOGGED_IN
    assert imap.result is ProbeResult.LOGGED_IN and imap.credential is CredentialUse.SENT
    # The implicit-TLS submissions port is not 465: the payload cannot say it, and the report says why.
    submissions = next(c for c in result.candidates if c.port == lab.smtp["submissions"].port)
    assert submissions.result is ProbeResult.NOT_EXPRESSIBLE and "465" in submissions.reason
    assert submissions.credential is CredentialUse.NOT_GIVEN
    assert "discover.not_expressible" in {f.code for f in result.findings}
    assert alice.password not in result.model_dump_json()


async def test_srv_outside_the_domain_gets_no_password_as_the_servers_logs_show(lab: Lab) -> None:
    address = f"proof-{secrets.token_hex(4)}@srv-foreign.test"
    result = await run(lab, address, smtp_password="Not-Sent-" + secrets.token_hex(4))
    assert result.verdict is Verdict.ERROR
    for candidate in result.candidates:
        assert candidate.host == "mail.lab.test" and not candidate.trusted
        assert candidate.result is ProbeResult.AUTH_OFFERED  # probed without a password
        assert candidate.credential is CredentialUse.WITHHELD
    assert "discover.untrusted_host" in {f.code for f in result.findings}
    await asyncio.sleep(0.5)  # Dovecot writes its disconnect line as the connection ends
    assert address not in logs(lab)
    # The control: trusted, the login is tried and Dovecot names the user it refused.
    trusted = await run(
        lab, address, smtp_password="Sent-" + secrets.token_hex(4), trust_hosts=["mail.lab.test"]
    )
    assert {c.credential for c in trusted.candidates if c.result is not ProbeResult.NOT_EXPRESSIBLE} >= {
        CredentialUse.SENT
    }
    deadline = time.monotonic() + 10
    while address not in logs(lab):
        assert time.monotonic() < deadline, "the trusted login never reached the servers' logs"
        await asyncio.sleep(0.2)
    assert trusted.verdict is Verdict.FAIL


def test_a_partial_payload_is_completed_checked_and_created(lab: Lab, tmp_path: Path) -> None:
    alice = lab.user("alice")
    payload = tmp_path / "alice.json"
    payload.write_text(json.dumps({"email_address": alice.email, "display_name": "Alice Lab"}))
    common = [
        "--nameserver",
        nameserver(lab),
        "--ca-file",
        str(lab.ca_file),
        "--autoconfig-port",
        str(closed_port()),
        "--skip",
        "dns",
    ]
    env = {"INBOXCHECK_SMTP_PASSWORD": alice.password, "COLDSEND_API_KEY": KEY}
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        dry: Result = CliRunner().invoke(
            cli, ["connect", str(payload), "--dry-run", "--api-url", api.url, *common], env=env
        )
        assert dry.exit_code == 0, dry.output
        assert f'"smtp_port": {lab.smtp["submission"].port}' in dry.stdout
        assert "Settings discovery" in dry.stdout and api.log == []
        created: Result = CliRunner().invoke(
            cli, ["connect", str(payload), "--format", "json", "--api-url", api.url, *common], env=env
        )
        assert created.exit_code == 0, created.output
        [create] = api.creates()
    assert create.body is not None
    body = create.body
    assert (body["smtp_host"], body["smtp_port"], body["smtp_use_tls"]) == (
        "mail.lab.test",
        lab.smtp["submission"].port,
        True,
    )
    assert (body["imap_host"], body["imap_port"], body["imap_use_ssl"]) == (
        "mail.lab.test",
        lab.imap["imaps"].port,
        True,
    )
    assert body["smtp_username"] == body["imap_username"] == alice.email
    assert body["display_name"] == "Alice Lab" and body["inbox_type"] == "CUSTOM_SMTP"
    assert "smtp_password" in body and "imap_password" in body  # the double's log masks them
    result = json.loads(created.stdout)
    first = result["report"]["checks"][0]
    assert first["name"] == "account.discovered"
    filled = first["findings"][0]["evidence"]["filled"]
    assert filled["smtp_port"] == "srv _submission._tcp.lab.test"
    assert {c["name"]: c["status"] for c in result["report"]["checks"]}["smtp.login"] == "pass"
    assert alice.password not in created.stdout and alice.password not in dry.output
