"""Any byte a server sends is data, never a crash: a Latin-1 byte, a lone surrogate in a JSON body, and
invisible or reordering characters, from SMTP and IMAP peers and from the platform's API.

The report keeps such text as U+FFFD (with the raw bytes as hex in the SMTP steps), the JSON writer never
fails on it, and text output shows every invisible or undecodable character as a visible escape.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inboxcheck._models import Status
from inboxcheck.checks.login import imap, smtp
from inboxcheck.cli import cli
from inboxcheck.cli._terminal import escape
from inboxcheck.platform.outcomes import ApiOutcome
from lab.api_double import ApiDouble, Respond
from tests.peers import Peer, PeerCerts, serving_in_thread
from tests.scenarios import PASSWORD, USER, ImapScript, SmtpScript, base_payload, peer, run_login

# What a German mail server's greeting looks like when its name is written in Latin-1.
LATIN1_GREETING = "220 mail M\udcfcller GmbH ESMTP"
KEY = "cs_test_BYTESkeyZ9x8w7v6u5t4s3QWERTY"


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts()


def test_server_text_replaces_what_no_json_writer_can_write() -> None:
    from inboxcheck._models import server_text, undecodable_hex

    assert server_text("M\udcfcller") == "M\ufffdller"
    assert server_text(b"M\xfcller") == "M\ufffdller"
    assert server_text("\ud800 lone") == "\ufffd lone"
    assert server_text("plain é \u202e") == "plain é \u202e"
    assert undecodable_hex("M\udcfc") == "4dfc"
    assert undecodable_hex("clean é") is None


def test_details_and_evidence_are_cleaned_at_any_depth_and_kept_as_they_are_when_clean() -> None:
    # A clean value is told by one pass of the JSON encoder and kept; one lone surrogate anywhere
    # (a key, a list deep down) sends the whole value through the walk.
    from pydantic import JsonValue

    from inboxcheck._models import CheckResult, Finding, Severity, Status

    clean: dict[str, JsonValue] = {
        "reply": "250 ok é \u202e",
        "steps": [{"n": 1, "x": None, "f": 1.5, "ok": True}],
    }
    dirty: dict[str, JsonValue] = {"M\udcfc": [{"deep": ["fine", "f\udcfcr"]}], "n": 2}
    finding = Finding(code="smtp.x", severity=Severity.FAIL, message="m", evidence=dirty)
    result = CheckResult(
        name="c",
        title="t",
        status=Status.FAIL,
        summary="s",
        duration_ms=1,
        findings=(finding,),
        details=clean,
    )
    assert result.details == clean
    assert result.findings[0].evidence == {"M\ufffd": [{"deep": ["fine", "f\ufffdr"]}], "n": 2}


async def test_a_latin1_smtp_greeting_and_reply_are_data_in_the_json_report(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(),
        banner=LATIN1_GREETING,
        auth_reply="535 5.7.8 Anmeldung f\udcfcr M\udcfcller fehlgeschlagen",
    )
    async with peer(script) as server:
        run = await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=server.port)
    assert run.result.traceback is None
    assert run.codes == ["smtp.auth.rejected"]
    document = json.loads(run.report.model_dump_json())  # exit 70 (PydanticSerializationError) before
    (check,) = document["checks"]
    greeting = check["details"]["steps"][0]
    assert greeting["reply"] == "220 mail M\ufffdller GmbH ESMTP"
    assert bytes.fromhex(greeting["reply_hex"]) == b"220 mail M\xfcller GmbH ESMTP"
    assert "f\ufffdr M\ufffdller" in check["findings"][0]["evidence"]["reply"]


async def test_a_latin1_byte_in_an_imap_capability_is_data_not_a_bug(certs: PeerCerts) -> None:
    script = ImapScript(
        tls=certs.server_context(),
        capabilities_implicit="IMAP4rev1 X-M\udcfcLLER AUTH=PLAIN",
        login_reply="OK [CAPABILITY IMAP4rev1] Willkommen, M\udcfcller",
        implicit=True,
    )
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_login(imap.CHECKS, "imap.login", certs, imap_port=server.port)
    assert run.result.traceback is None, run.result.traceback  # internal.bug (UnicodeDecodeError) before
    assert run.result.status is Status.PASS, run.result
    assert "X-M\ufffdLLER" in run.detail("capabilities")
    json.loads(run.report.model_dump_json())


async def test_a_latin1_imap_refusal_is_in_the_evidence(certs: PeerCerts) -> None:
    script = ImapScript(
        tls=certs.server_context(), implicit=True, login_reply="NO Passwort f\udcfcr M\udcfcller falsch"
    )
    async with peer(script, tls=certs.server_context()) as server:
        run = await run_login(imap.CHECKS, "imap.login", certs, imap_port=server.port)
    assert run.result.traceback is None
    assert run.result.status is Status.FAIL
    document = run.report.model_dump_json()
    assert (
        "Passwort f\ufffdr M\ufffdller falsch"
        in json.loads(document)["checks"][0]["findings"][0]["evidence"]["reply"]
    )


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _smtp_cli(tmp_path: Path, certs: PeerCerts, port: int, *extra: str) -> Any:
    ca_file = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    account = _write(tmp_path, "account.json", base_payload(smtp_port=port))
    args = ["check", account, "--only", "smtp", "--ca-file", str(ca_file), "--timeout", "5", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_json_report_of_a_latin1_greeting(tmp_path: Path, certs: PeerCerts) -> None:
    def make() -> Peer:
        return Peer(SmtpScript(tls=certs.server_context(), banner=LATIN1_GREETING))

    with serving_in_thread(make) as server:
        result = _smtp_cli(tmp_path, certs, server.port, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["verdict"] == "pass"
    assert document["checks"][0]["details"]["steps"][0]["reply"] == "220 mail M\ufffdller GmbH ESMTP"


def test_cli_text_shows_invisible_and_reordering_characters_escaped(tmp_path: Path, certs: PeerCerts) -> None:
    reply = "535 5.7.8 bad\u200b login \u202egnp.exe\u2066 \ufeffM\udcfcller"

    def make() -> Peer:
        return Peer(SmtpScript(tls=certs.server_context(), auth_reply=reply))

    with serving_in_thread(make) as server:
        result = _smtp_cli(tmp_path, certs, server.port, "--verbose")
    assert result.exit_code == 1, result.output
    assert "bad\\u200b login \\u202egnp.exe\\u2066 \\ufeffM\ufffdller" in result.stdout
    for char in "\u200b\u202e\u2066\ufeff":
        assert char not in result.output


def test_escape_covers_every_format_and_control_character_and_raw_bytes() -> None:
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            shown = escape(char)
            assert shown != char and shown.isascii() and shown.isprintable(), hex(code)
    assert escape("M\udcfcller") == "M\\xfcller"  # a byte that was not UTF-8, shown as that byte
    assert escape("Müller \u00e9") == "Müller \u00e9"


_CREATED = {
    "id": "in_b\u00fctes",
    "email_address": USER,
    "display_name": "Sam M\udcfcller",
    "inbox_type": "CUSTOM_SMTP",
    "daily_limit": 30,
    "status": "PENDING",
    "created_at": "2026-11-26T12:00:00Z",
}


@pytest.mark.parametrize(
    "answer",
    [
        # a lone surrogate as a JSON escape ("\udcfc"): valid JSON, no UTF-8 form
        Respond(201, _CREATED),
        # the same body with a raw Latin-1 byte: not UTF-8 at all
        Respond(201, text=json.dumps(_CREATED, ensure_ascii=False)),
    ],
    ids=["json-escape", "raw-byte"],
)
def test_cli_connect_json_keeps_the_created_inbox_whatever_bytes_its_answer_holds(
    tmp_path: Path, answer: Respond
) -> None:
    account = _write(tmp_path, "account.json", base_payload(smtp_password=PASSWORD))
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        api.misbehave(answer)
        result = CliRunner().invoke(
            cli,
            ["connect", account, "--only", "account", "--api-url", api.url, "--format", "json"],
            env={"COLDSEND_API_KEY": KEY},
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output  # 70 with no output (the id lost) before
    document = json.loads(result.stdout)
    assert document["create"]["outcome"] == ApiOutcome.CREATED.value
    assert document["create"]["inbox"]["id"] == "in_b\u00fctes"
    assert document["create"]["inbox"]["display_name"] == "Sam M\ufffdller"
