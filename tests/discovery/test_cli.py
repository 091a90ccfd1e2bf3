"""``inboxcheck discover`` and partial payloads through the command line, against scripted peers.

The command runs in a thread (it has its own event loop) while the peers serve in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import jsonschema
from click.testing import CliRunner, Result

from inboxcheck._schema import committed_discovery_schema
from inboxcheck.cli import cli
from tests.discovery.conftest import ADDRESS, PASSWORD, Mail, config_xml, ok, web_peer
from tests.peers import DnsPeer, PeerCerts


def _ca(tmp_path: Path, certs: PeerCerts) -> str:
    path = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(path))
    return str(path)


async def _run(args: list[str], env: dict[str, str] | None = None) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)

    return await asyncio.to_thread(invoke)


def _common(mail: Mail, ca: str, port: int) -> list[str]:
    return [
        "--nameserver",
        mail.dns.nameserver,
        "--ca-file",
        ca,
        "--autoconfig-port",
        str(port),
        "--timeout",
        "2",
    ]


async def test_discover_json_matches_the_schema_and_writes_a_private_payload(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    out = tmp_path / "account.json"
    async with web.peer:
        result = await _run(
            [
                "discover",
                ADDRESS,
                "--format",
                "json",
                "--write",
                str(out),
                *_common(mail, _ca(tmp_path, certs), web.peer.port),
            ]
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        jsonschema.validate(data, committed_discovery_schema())
        assert data["verdict"] == "pass"
        assert {c["protocol"] for c in data["candidates"]} == {"smtp", "imap"}
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        written = json.loads(out.read_text())
        assert written == data["account"]
        assert not any("password" in key for key in written)
        # Never over an existing file without --force, and the refusal comes before any work.
        again = await _run(
            ["discover", ADDRESS, "--write", str(out), *_common(mail, _ca(tmp_path, certs), web.peer.port)]
        )
        assert again.exit_code == 2 and "--force" in again.stderr
        forced = await _run(
            [
                "discover",
                ADDRESS,
                "--write",
                str(out),
                "--force",
                *_common(mail, _ca(tmp_path, certs), web.peer.port),
            ]
        )
        assert forced.exit_code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(web.requests) == 2  # the refused run fetched nothing


async def test_discover_text_says_where_each_setting_came_from(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await _run(["discover", ADDRESS, *_common(mail, _ca(tmp_path, certs), web.peer.port)])
    assert result.exit_code == 0, result.output
    assert "Settings:" in result.stdout and "<- autoconfig https://autoconfig.peer.test:" in result.stdout
    assert f"SMTP mail.peer.test:{mail.smtp.port} (starttls)  auth_offered [chosen]" in result.stdout


async def test_discover_text_names_the_host_that_got_no_password(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.other.test", mail.smtp.port, mail.imap.port)))
    async with web.peer:
        result = await _run(
            ["discover", ADDRESS, *_common(mail, _ca(tmp_path, certs), web.peer.port)],
            env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD},
        )
    assert result.exit_code == 3, result.output
    assert "Settings: none found that work." in result.stdout  # never a host the password may not reach
    assert "password withheld" in result.stdout
    assert "--trust-host mail.other.test" in result.stdout
    assert PASSWORD not in result.output


async def test_a_partial_payload_is_completed_and_the_report_says_from_where(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"email_address": ADDRESS, "display_name": "Jane Peer", "imap_port": 143}))
    async with web.peer:
        result = await _run(
            [
                "check",
                str(partial),
                "--only",
                "account",
                "--format",
                "json",
                *_common(mail, _ca(tmp_path, certs), web.peer.port),
            ],
            env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD},
        )
    report = json.loads(result.stdout)
    first = report["checks"][0]
    assert first["name"] == "account.discovered"
    codes = {f["code"]: f for f in first["findings"]}
    filled = codes["discover.filled"]["evidence"]["filled"]
    assert set(filled) == {
        "inbox_type",
        "smtp_host",
        "smtp_port",
        "smtp_use_tls",
        "smtp_username",
        "imap_host",
        "imap_use_ssl",
        "imap_username",
    }
    assert filled["smtp_host"].startswith("autoconfig https://autoconfig.peer.test:")
    conflict = codes["discover.conflict"]
    assert conflict["severity"] == "warn"
    assert conflict["evidence"] == {"field": "imap_port", "given": 143, "discovered": mail.imap.port}
    # The user's field was kept; the rest is the discovered endpoint.
    assert report["account"]["imap_port"] == 143
    assert report["account"]["smtp_port"] == mail.smtp.port
    assert report["account"]["display_name"] == "Jane Peer"
    assert PASSWORD not in result.output


async def test_a_partial_payload_nothing_can_complete_is_bad_input(tmp_path: Path, certs: PeerCerts) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"email_address": ADDRESS}))
    guessed = ("smtp.peer.test", "mail.peer.test", "imap.peer.test")
    async with DnsPeer(nxdomain=guessed) as dns_peer:
        result = await _run(
            [
                "check",
                str(partial),
                "--only",
                "account",
                "--nameserver",
                dns_peer.nameserver,
                "--ca-file",
                _ca(tmp_path, certs),
                "--autoconfig-port",
                "9",
                "--timeout",
                "2",
            ]
        )
    assert result.exit_code == 2
    assert "smtp_host: is missing, and discovery found no working settings" in result.stderr
    assert "discover.nothing_works" in result.stderr


async def test_a_partial_batch_line_is_completed(tmp_path: Path, mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    lines = tmp_path / "lines.jsonl"
    full = {
        "email_address": "sam@example.test",
        "display_name": "Sam",
        "inbox_type": "CUSTOM_SMTP",
        "smtp_host": "mail.example.test",
        "smtp_port": 587,
        "smtp_username": "sam@example.test",
        "imap_host": "mail.example.test",
        "imap_port": 993,
        "imap_username": "sam@example.test",
    }
    lines.write_text(json.dumps(full) + "\n" + json.dumps({"email_address": ADDRESS}) + "\n")
    output = tmp_path / "out.jsonl"
    async with web.peer:
        result = await _run(
            [
                "check",
                "--batch",
                str(lines),
                "--output",
                str(output),
                "--only",
                "account",
                *_common(mail, _ca(tmp_path, certs), web.peer.port),
            ],
            env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD},
        )
    records = [json.loads(line) for line in output.read_text().splitlines()]
    by_line = {r["line"]: r for r in records if r.get("kind") != "header"}
    assert by_line[1]["report"]["checks"][0]["name"] != "account.discovered"
    second = by_line[2]["report"]
    assert second["checks"][0]["name"] == "account.discovered"
    assert second["account"]["smtp_port"] == mail.smtp.port
    assert result.exit_code in (0, 3), result.output
    assert PASSWORD not in output.read_text()


async def test_connect_batch_creates_a_completed_partial_line(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    from lab.api_double import ApiDouble

    key = "cs_test_" + "k" * 24
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    lines = tmp_path / "lines.jsonl"
    lines.write_text(json.dumps({"email_address": ADDRESS, "display_name": "Jane Peer"}) + "\n")
    output = tmp_path / "log.jsonl"
    with ApiDouble(keys={key}).running_in_thread() as api:
        async with web.peer:
            result = await _run(
                [
                    "connect",
                    "--batch",
                    str(lines),
                    "--output",
                    str(output),
                    "--only",
                    "account",
                    "--api-url",
                    api.url,
                    *_common(mail, _ca(tmp_path, certs), web.peer.port),
                ],
                env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD, "COLDSEND_API_KEY": key},
            )
        assert result.exit_code == 0, result.output
        [create] = api.creates()
    assert create.body is not None
    assert (create.body["smtp_host"], create.body["smtp_port"]) == ("mail.peer.test", mail.smtp.port)
    assert (create.body["imap_host"], create.body["imap_port"]) == ("mail.peer.test", mail.imap.port)
    assert create.body["display_name"] == "Jane Peer" and "smtp_password" in create.body
    assert PASSWORD not in output.read_text()


async def test_a_partial_payload_is_never_completed_with_a_host_the_password_may_not_reach(
    tmp_path: Path, mail: Mail, certs: PeerCerts
) -> None:
    web = web_peer(certs, ok(config_xml("mail.other.test", mail.smtp.port, mail.imap.port)))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"email_address": ADDRESS, "display_name": "Jane Peer"}))
    env = {"INBOXCHECK_SMTP_PASSWORD": PASSWORD}
    async with web.peer:
        args = [
            "check",
            str(partial),
            "--only",
            "account",
            *_common(mail, _ca(tmp_path, certs), web.peer.port),
        ]
        refused = await _run(args, env=env)
        assert refused.exit_code == 2
        assert "discover.untrusted_host" in refused.stderr
        trusted = await _run([*args, "--trust-host", "mail.other.test"], env=env)
    assert trusted.exit_code in (0, 1, 3), trusted.output
    assert "Settings discovery" in trusted.stdout
    assert b"AUTH" not in mail.smtp.received  # --only account: the completion itself logs in nowhere


async def test_diagnose_takes_a_partial_payload_too(tmp_path: Path, mail: Mail, certs: PeerCerts) -> None:
    web = web_peer(certs, ok(config_xml("mail.peer.test", mail.smtp.port, mail.imap.port)))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"email_address": ADDRESS, "display_name": "Jane Peer"}))
    async with web.peer:
        result = await _run(
            [
                "diagnose",
                str(partial),
                "--only",
                "account",
                "--no-alternates",
                "--format",
                "json",
                *_common(mail, _ca(tmp_path, certs), web.peer.port),
            ],
            env={"INBOXCHECK_SMTP_PASSWORD": PASSWORD},
        )
    diagnosis = json.loads(result.stdout)
    assert diagnosis["report"]["checks"][0]["name"] == "account.discovered"
    assert diagnosis["report"]["account"]["smtp_port"] == mail.smtp.port
    assert PASSWORD not in result.output
