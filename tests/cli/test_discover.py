"""inboxcheck discover: its text form (what a server or a DNS record said is shown, never obeyed), and
the command offline (the lab and scripted peers: tests/discovery/)."""

from __future__ import annotations

import pytest

from inboxcheck._models import Severity, Verdict, finding
from inboxcheck._presets import TlsMode
from inboxcheck.cli.discover import render_discovery
from inboxcheck.discovery.model import Candidate, Discovery, MailProtocol, ProbeResult, SourceKind
from tests.cli.runner import run, words


def test_terminal_escapes_from_outside_are_shown_escaped() -> None:
    hostile = "mail.example.com\x1b[2J\x1b]0;owned\x07"
    result = Discovery(
        email_address="jane@example.com",
        duration_ms=1.0,
        account=None,
        candidates=(
            Candidate(
                protocol=MailProtocol.SMTP,
                host="mail.example.com",
                port=587,
                tls=TlsMode.STARTTLS,
                source=SourceKind.AUTOCONFIG,
                sources=(f"autoconfig https://{hostile}/",),
                result=ProbeResult.PROTOCOL_ERROR,
                reason=f"answered {hostile!r} and \x1b[31mred",
            ),
        ),
        findings=(
            finding("discover.nothing_works", Severity.FAIL, f"nothing at {hostile}", fix="\x1b[1mfix"),
        ),
        verdict=Verdict.FAIL,
    )
    text = render_discovery(result, colour=False, unicode=True, verbose=True)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text and "\\x1b[31mred" in text
    assert "Settings: none found that work." in text and "Verdict: FAIL" in text


def _found(credential: str) -> Discovery:
    from inboxcheck.discovery.model import CredentialUse

    source = "autoconfig https://autoconfig.example.com/mail/config-v1.1.xml"
    fields = ("smtp_host", "smtp_port", "imap_host", "imap_port")
    return Discovery(
        email_address="jane@example.com",
        duration_ms=1.0,
        account={
            "email_address": "jane@example.com",
            "smtp_host": "mail.example.com",
            "smtp_port": 587,
            "imap_host": "mail.example.com",
            "imap_port": 993,
        },
        filled=dict.fromkeys(fields, source),
        candidates=(
            Candidate(
                protocol=MailProtocol.SMTP,
                host="mail.example.com",
                port=587,
                tls=TlsMode.STARTTLS,
                source=SourceKind.AUTOCONFIG,
                sources=(source,),
                result=ProbeResult.AUTH_OFFERED,
                credential=CredentialUse(credential),
                chosen=True,
            ),
        ),
        findings=(),
        verdict=Verdict.PASS,
    )


def test_the_settings_name_each_source_once() -> None:
    text = render_discovery(_found("not_given"), colour=False, unicode=True, verbose=False)
    settings = text.split("Settings:")[1].split("Candidates tried")[0]
    assert settings.count("autoconfig https://autoconfig.example.com") == 1
    assert (
        "<- autoconfig https://autoconfig.example.com/mail/config-v1.1.xml: smtp_host, smtp_port" in settings
    )


def test_the_text_says_when_it_ran_without_a_password() -> None:
    without = render_discovery(_found("not_given"), colour=False, unicode=True, verbose=False)
    assert "No password was given: each endpoint was probed without logging in" in without
    given = render_discovery(_found("sent"), colour=False, unicode=True, verbose=False)
    assert "No password was given" not in given


def test_discover_text_wraps_to_columns_at_word_boundaries() -> None:
    # gmail.com is answered from the presets and --no-probe connects nowhere: offline.
    args = ["discover", "jane@gmail.com", "--no-probe", "-v"]
    flat = run(args)
    result = run(args, env={"COLUMNS": "80"})
    assert result.exit_code == flat.exit_code == 3, result.output
    assert words(result.stdout) == words(flat.stdout)
    assert max(len(line) for line in flat.stdout.splitlines()) > 80, "the test needs long lines"
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout


@pytest.mark.parametrize(
    ("address", "problem"),
    [("bad", "must contain exactly one @"), ("a@b", "its domain needs at least one dot")],
)
def test_discover_names_what_is_wrong_with_the_address(address: str, problem: str) -> None:
    result = run(["discover", address])
    assert result.exit_code == 2
    assert f"error: address: {address!r} is not an email address: {problem}" in result.stderr
    assert "Traceback" not in result.output
