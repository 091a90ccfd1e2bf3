"""Text output for people: wrapped at word boundaries, records whole, and nothing from outside raw.

Reports come from real checks: the lab's NSD for DNS (fixtures/zones, including escape.test whose
TXT records carry terminal control sequences) and a scripted SMTP peer whose replies carry them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from inboxcheck._models import Finding, InboxType, Report, Severity
from inboxcheck._options import CheckOptions, Family, Nameserver
from inboxcheck._runner import run_checks
from inboxcheck.cli._report import TextRenderer
from inboxcheck.cli._terminal import escape, wrap
from inboxcheck.cli.diagnose import render_diagnosis
from tests.checks.test_dns import account

if TYPE_CHECKING:
    from lab import Lab

# What a terminal acts on: ESC (CSI and OSC sequences), BEL, CR, backspace, the C1 controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
WIDTHS = (80, 100)
# Domains whose findings print records: a missing DMARC record, two SPF records, a bad DMARC record,
# an SPF record without "all", a long DKIM key; and a Google Workspace account for its prose.
DOMAINS = ("nodmarc.test", "spf-two.test", "dmarc-syntax.test", "spf-noall.test", "dkim512.test")


def _options(lab: Lab, *families: Family) -> CheckOptions:
    host, port = lab.nameserver
    return CheckOptions(
        nameservers=(Nameserver(host=host, port=port),),
        timeout=2.0,
        families=frozenset(families or (Family.ACCOUNT, Family.DNS)),
    )


async def _reports(lab: Lab) -> list[Report]:
    accounts = [account(f"dana@{domain}") for domain in DOMAINS]
    accounts.append(account("dana@google-style.test", InboxType.GOOGLE_WORKSPACE))
    return [await run_checks(item, options=_options(lab)) for item in accounts]


def _records(report: Report) -> list[str]:
    """The records the report's findings ask to publish or quote (the renderer's own reading)."""
    from inboxcheck.cli._report import records_in as _records_in

    return [record for f in report.findings() for record in _records_in(f) if " " in record]


def _to_publish(report: Report) -> list[str]:
    """The records the fixes ask to publish: each must stand alone on its line, ready to copy."""
    from inboxcheck.cli._report import records_in as _records_in

    found = [(record, f.fix or "") for f in report.findings() for record in _records_in(f)]
    return [record for record, fix in found if " " in record and record in fix]


# --- escape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("good\rbad", "good\\rbad"),
        ("ab\bc", "ab\\bc"),
        ("line\nnext", "line\\nnext"),
        ("\x9b31m", "\\x9b31m"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),
        ("\x00\x7f", "\\x00\\x7f"),
    ],
)
def test_escape_makes_every_control_character_visible(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert not RAW_CONTROL.search(escape(raw))


def test_escape_leaves_text_people_write_alone() -> None:
    text = "Gmail · ✔ Zoë's «mailbox» 東京 v=DMARC1; p=none; rua=mailto:d@example.com C:\\path"
    assert escape(text) == text


# --- wrapping -------------------------------------------------------------------------------------


def test_wrap_breaks_between_words_keeps_the_indent_and_records_whole() -> None:
    record = "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com; fo=1"
    text = "fix: Publish a TXT record at _dmarc.example.com, which tells receivers what to do: " + record
    lines = wrap(text, width=40, indent="    ", hang="      ", records=[record])
    assert lines[0].startswith("    fix:")
    assert all(line.startswith("      ") for line in lines[1:])
    assert "      " + record in lines
    assert all(len(line) <= 40 for line in lines if record not in line)
    assert " ".join(" ".join(lines).split()) == " ".join(text.split())


def test_without_a_width_nothing_wraps_but_a_record_still_has_its_own_line() -> None:
    record = "v=spf1 include:_spf.google.com ~all"
    lines = wrap(f"fix: Publish a TXT record at example.com: {record}", width=None, records=[record])
    assert lines == ["fix: Publish a TXT record at example.com:", record]


def _tokens(text: str) -> list[str]:
    return text.split()


@pytest.mark.lab
@pytest.mark.parametrize("width", WIDTHS)
async def test_reports_at_80_and_100_columns_break_no_word_and_no_record(lab: Lab, width: int) -> None:
    checked_records = 0
    for report in await _reports(lab):
        for verbose in (False, True):
            flat = TextRenderer(verbose=verbose).render(report)
            text = TextRenderer(verbose=verbose, width=width).render(report)
            lines = text.splitlines()
            # Every word of the unwrapped text, in order: a word cut in two would be two tokens.
            assert _tokens(text) == _tokens(flat), report.account.email_address
            records = _records(report)
            for record in records:
                assert any(record in line for line in lines), (record, text)
            for record in _to_publish(report):
                assert any(line.strip() == record for line in lines), (record, text)
            checked_records += len(records)
            for line in lines:
                if len(line) > width:
                    # Only a record, or one word longer than the width, may stand out.
                    assert any(r in line for r in records) or len(line.split()) <= 2, (width, line)
    assert checked_records >= 6


@pytest.mark.lab
async def test_the_record_to_publish_is_printed_alone_on_its_line(lab: Lab) -> None:
    report = await run_checks(account("dana@nodmarc.test"), options=_options(lab))
    missing = next(f for f in report.findings() if f.code == "dns.dmarc.missing")
    assert missing.fix is not None
    record = missing.fix.split(": ", 1)[1]
    assert record.startswith("v=DMARC1;")
    lines = TextRenderer(width=80).render(report).splitlines()
    assert "          " + record in lines


# --- escaping in every text renderer ---------------------------------------------------------------


@pytest.mark.lab
async def test_dns_records_with_control_sequences_are_escaped_in_text_and_exact_in_json(lab: Lab) -> None:
    report = await run_checks(account("dana@escape.test"), options=_options(lab, Family.DNS))
    raw = json.dumps([f.evidence for f in report.findings()]) + report.model_dump_json()
    assert "\\u001b]0;pwned\\u0007" in raw, "the lab must serve the control sequences"
    spf = Report.model_validate_json(report.model_dump_json()).check("dns.spf")
    assert spf.details["record"] == "v=spf1 \x1b]0;pwned\x07 ip4:192.0.2.25 \x1b[2J\r\x08 -all"
    for verbose in (False, True):
        for width in (None, 80):
            text = TextRenderer(verbose=verbose, width=width).render(report)
            assert not RAW_CONTROL.search(text), repr(text)
    text = TextRenderer(verbose=True).render(report)
    assert "\\x1b]0;pwned\\x07" in text
    assert "\\x1b[31m" in text


async def test_server_replies_with_control_sequences_are_escaped_in_every_text_renderer() -> None:
    from inboxcheck._diagnose import Diagnosis, look_further, rank_causes
    from inboxcheck.checks.login import smtp
    from tests.peers import PeerCerts
    from tests.scenarios import SmtpScript, peer, run_login

    certs = PeerCerts()
    hostile = "535 5.7.8 \x1b]0;owned\x07\x1b[2J bad\rcredentials\x08\x08 \x9b31m"
    script = SmtpScript(tls=certs.server_context(), auth_reply=hostile)
    async with peer(script) as server:
        run = await run_login(smtp.CHECKS, "smtp.login", certs, smtp_port=server.port)
    exact = run.report.model_dump_json()
    assert "\\u001b]0;owned\\u0007" in exact, "JSON keeps the server's exact text"
    assert run.result.findings, run.result
    diagnosis = Diagnosis(
        report=run.report,
        causes=rank_causes(run.report),
        notices=look_further(run.report),
        alternatives=(),
        suggested_changes={},
    )
    texts = [
        TextRenderer(verbose=True).render(run.report),
        TextRenderer(verbose=False, width=80).render(run.report),
        TextRenderer().verdict_line(run.report),
        render_diagnosis(diagnosis, colour=False, unicode=True, verbose=True, width=100),
    ]
    for text in texts:
        assert not RAW_CONTROL.search(text), repr(text)
    assert "\\x1b]0;owned\\x07" in texts[0]


def test_a_username_with_control_characters_is_escaped_in_the_text_report() -> None:
    from inboxcheck._runner import check_sync
    from tests.helpers import custom_payload

    payload = custom_payload(smtp_username="sam\r\nX: 1", imap_username="sam\x1b]0;x\x07@example.test")
    report = check_sync(payload, families=frozenset({Family.ACCOUNT}))
    assert report.check("account.usernames").findings, "the usernames must be shown as evidence"
    for width in (None, 80):
        text = TextRenderer(verbose=True, width=width).render(report)
        assert "imap_username: sam\\x1b]0;x\\x07@example.test" in text, text
        assert not RAW_CONTROL.search(text), repr(text)


def test_a_finding_built_by_hand_is_escaped_in_message_fix_and_evidence() -> None:
    finding = Finding(
        code="smtp.auth.rejected",
        severity=Severity.FAIL,
        message="The server said \x1b[2J no",
        fix="Type the password \rcarefully",
        evidence={"reply": "535 \x1b]0;t\x07", "detail": ["\x08"], "record": "v=spf1 \x1b[2J -all"},
    )
    for width in (None, 80):
        lines = TextRenderer(verbose=True, width=width)._finding(finding)
        assert not RAW_CONTROL.search("\n".join(lines)), lines
        assert "        record: v=spf1 \\x1b[2J -all" in lines


@pytest.mark.parametrize("width", WIDTHS)
def test_every_preset_at_80_and_100_columns_breaks_no_word(width: int) -> None:
    from inboxcheck._presets import load_presets
    from inboxcheck.cli.presets import describe_preset

    longest = 0
    for preset in load_presets():
        flat = describe_preset(preset)
        text = describe_preset(preset, width=width)
        assert text.split() == flat.split(), preset.id
        longest = max(longest, *(len(line) for line in flat.splitlines()))
        for line in text.splitlines():
            assert len(line) <= width or len(line.split()) == 1, (preset.id, line)
    assert longest > width, "the presets must have lines to wrap"


@pytest.mark.lab
async def test_colour_codes_do_not_count_towards_the_width(lab: Lab) -> None:
    sgr = re.compile("\x1b\\[[0-9;]*m")
    for report in await _reports(lab):
        plain = TextRenderer(width=80, verbose=True).render(report)
        coloured = TextRenderer(width=80, verbose=True, colour=True).render(report)
        assert "\x1b[" in coloured
        assert sgr.sub("", coloured) == plain
