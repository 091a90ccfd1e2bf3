"""The send test against scripted SMTP peers (refusals at MAIL FROM, RCPT TO and DATA, with provider
replies), its options, and its pure parts (LIST, SEARCH, Received, Authentication-Results).

The lab's real mail system (signing, delivery, Junk, cleanup) is in ``tests/checks/test_send_lab.py``.
"""

from __future__ import annotations

import email
import json
from typing import Any

import pytest
from pydantic import ValidationError

from inboxcheck._models import Account, Severity, Status
from inboxcheck._options import CheckOptions
from inboxcheck.checks import registered_checks, send
from inboxcheck.checks.login import smtp
from inboxcheck.checks.send.imap import parse_list, parse_search
from inboxcheck.checks.send.message import TOKEN_HEADER
from inboxcheck.checks.send.verify import parse_authentication_results, relay_hop
from tests.peers import DnsPeer, PeerCerts
from tests.scenarios import PASSWORD, Run, SmtpScript, assert_no_secret, base_payload, peer, run_check

SPECS = [*smtp.CHECKS, *send.CHECKS]
MICROSOFT = "smtp.office365.com"
GOOGLE = "smtp.gmail.com"


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts(extra_names=(MICROSOFT, GOOGLE))


async def _send(
    script: SmtpScript, certs: PeerCerts, name: str, *, host: str = "mail.peer.test", **options: Any
) -> tuple[Run, Any]:
    async with DnsPeer() as dns, peer(script) as server:
        payload = base_payload(smtp_host=host, smtp_port=server.port, imap_host="mail.peer.test")
        run = await run_check(
            SPECS, name, payload, certs=certs, nameservers=[dns.nameserver], send_test=True, **options
        )
    return run, server


def _verbs(script: SmtpScript) -> list[bytes]:
    return [command.split(b" ", 1)[0].split(b":", 1)[0].upper() for command in script.commands]


# --- sending ---------------------------------------------------------------------------------


async def test_permission_then_one_message_carrying_the_token(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    run, server = await _send(script, certs, "send.message")
    assert run.report.check("send.permission").status is Status.PASS
    assert run.result.status is Status.PASS, run.result
    token = run.result.details["token"]
    assert isinstance(token, str) and len(token) >= 20
    # Two conversations: MAIL, RCPT, RSET (nothing sent), then MAIL, RCPT, DATA.
    verbs = [v for v in _verbs(script) if v in (b"MAIL", b"RCPT", b"RSET", b"DATA")]
    assert verbs == [b"MAIL", b"RCPT", b"RSET", b"MAIL", b"RCPT", b"DATA"]
    assert b"MAIL FROM:<sam@peer.test>" in script.commands
    assert b"RCPT TO:<sam@peer.test>" in script.commands
    (message,) = [email.message_from_bytes(m) for m in script.messages]
    assert message[TOKEN_HEADER] == token
    assert token in str(message["Subject"])
    assert message["From"] == "Sam Peer <sam@peer.test>"
    assert_no_secret(server.cleartext)
    # The token appears in the report once: the send.message check's token field.
    text = run.report.model_dump_json()
    assert text.count(token) == 1
    assert PASSWORD not in text
    # Nothing to search: the account has no working IMAP login in this run.
    assert run.report.check("send.find").status is Status.SKIPPED


async def test_send_to_another_address_and_extra_headers(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context())
    run, _ = await _send(
        script, certs, "send.message", send_to="inbox@elsewhere.test", test_headers=(("X-Lab-Junk", "yes"),)
    )
    assert run.result.status is Status.PASS, run.result
    assert b"RCPT TO:<inbox@elsewhere.test>" in script.commands
    (message,) = [email.message_from_bytes(m) for m in script.messages]
    assert message["To"] == "inbox@elsewhere.test" and message["X-Lab-Junk"] == "yes"
    find = run.report.check("send.find")
    assert find.status is Status.SKIPPED and "inbox@elsewhere.test" in find.summary


async def test_microsoft_send_as_denied_at_mail_from_stops_before_anything_is_sent(certs: PeerCerts) -> None:
    reply = (
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
        "[AM0PR02CA0001.eurprd02.prod.outlook.com 2026-11-26T14:00:00.000Z 08DD1A2B3C4D5E6F]"
    )
    script = SmtpScript(tls=certs.server_context(), mail_reply=reply)
    run, _ = await _send(script, certs, "send.permission", host=MICROSOFT)
    finding = run.finding("smtp.send.send_as_denied")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["stage"] == "mail_from"
    assert finding.evidence["reply_code"] == 550
    assert finding.evidence["rule"] == "microsoft.smtp.send-as-denied"
    assert run.report.check("send.message").status is Status.SKIPPED
    assert b"DATA" not in _verbs(script) and b"RCPT" not in _verbs(script)


async def test_relaying_denied_at_rcpt(certs: PeerCerts) -> None:
    script = SmtpScript(
        tls=certs.server_context(), rcpt_reply="554 5.7.1 <inbox@elsewhere.test>: Relay access denied"
    )
    run, _ = await _send(script, certs, "send.permission", send_to="inbox@elsewhere.test")
    finding = run.finding("smtp.send.relay_denied")
    assert finding.severity is Severity.FAIL
    assert finding.evidence["stage"] == "rcpt_to"
    assert run.report.check("send.message").status is Status.SKIPPED


async def test_blocked_sender_at_mail_from(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), mail_reply="554 5.1.8 Sender address rejected")
    run, _ = await _send(script, certs, "send.permission")
    assert run.finding("smtp.send.sender_blocked").severity is Severity.FAIL


async def test_unknown_refusal_at_mail_from_falls_back_to_the_send_code(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), mail_reply="550 5.7.0 Not today")
    run, _ = await _send(script, certs, "send.permission")
    finding = run.finding("send.permission.sender_refused")
    assert finding.severity is Severity.FAIL
    assert "sam@peer.test" in finding.message


async def test_unknown_refusal_at_rcpt_falls_back_to_the_send_code(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), rcpt_reply="550 5.1.1 No such user here")
    run, _ = await _send(script, certs, "send.permission")
    assert run.finding("send.permission.recipient_refused").severity is Severity.FAIL


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_a_temporary_reply_is_could_not_tell(certs: PeerCerts, stage: str) -> None:
    reply = "451 4.3.0 Error: queue file write error"
    script = SmtpScript(tls=certs.server_context())
    setattr(script, f"{stage}_reply", reply)
    name = "send.message" if stage == "data" else "send.permission"
    run, _ = await _send(script, certs, name)
    assert run.result.status is Status.ERROR, run.result
    if stage != "data":
        assert run.result.summary.startswith("could not tell")
    assert all(f.severity is not Severity.FAIL for f in run.result.findings)


async def test_google_daily_limit_at_data(certs: PeerCerts) -> None:
    reply = (
        "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to "
        "https://support.google.com/a/answer/166852 d2e1a72fcca58-7e8a1b2c3d4sm1234567b3a.10 - gsmtp"
    )
    script = SmtpScript(tls=certs.server_context(), data_reply=reply)
    run, _ = await _send(script, certs, "send.message", host=GOOGLE)
    finding = run.finding("smtp.send.daily_limit_reached")
    assert finding.severity is Severity.FAIL and finding.evidence["stage"] == "data"
    assert str(run.result.details["token"]) not in json.dumps(finding.model_dump(mode="json"))
    assert run.report.check("send.find").status is Status.SKIPPED


async def test_microsoft_outbound_spam_at_data(certs: PeerCerts) -> None:
    reply = (
        "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to "
        "a permanent exception with message WASCL UserAction verdict is not None. Actual verdict is Suspend."
    )
    script = SmtpScript(tls=certs.server_context(), data_reply=reply)
    run, _ = await _send(script, certs, "send.message", host=MICROSOFT)
    assert run.finding("smtp.send.blocked_as_spam").severity is Severity.FAIL


async def test_unknown_refusal_at_data_falls_back_to_the_send_code(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), data_reply="554 5.6.0 Message rejected")
    run, _ = await _send(script, certs, "send.message")
    assert run.finding("send.message.refused").severity is Severity.FAIL


async def test_a_failed_login_skips_the_send_test(certs: PeerCerts) -> None:
    script = SmtpScript(tls=certs.server_context(), auth_reply="535 5.7.8 Error: authentication failed: x")
    run, _ = await _send(script, certs, "send.permission")
    assert run.result.status is Status.SKIPPED
    assert b"MAIL" not in _verbs(script)


# --- never by default --------------------------------------------------------------------------


def test_the_send_test_and_deliverability_are_off_unless_asked() -> None:
    names = [spec.name for spec in registered_checks() if spec.selected_by(CheckOptions())]
    assert not [n for n in names if n.startswith("send.") or n in ("dns.fcrdns", "dns.blocklists")]
    asked = CheckOptions(send_test=True, deliverability=True)
    names = [spec.name for spec in registered_checks() if spec.selected_by(asked)]
    assert {"send.permission", "send.message", "send.find", "send.verify", "send.cleanup"} <= set(names)
    assert {"dns.fcrdns", "dns.blocklists"} <= set(names)


def test_to_account_sets_the_recipient_and_must_agree_with_to() -> None:
    recipient = Account.model_validate(base_payload(email_address="kim@peer.test"))
    assert CheckOptions(send_to_account=recipient).send_to == "kim@peer.test"
    assert CheckOptions(send_to="KIM@peer.test", send_to_account=recipient).send_to == "KIM@peer.test"
    with pytest.raises(ValidationError, match="not the address of the --to-account mailbox"):
        CheckOptions(send_to="other@peer.test", send_to_account=recipient)


def test_the_deadline_makes_room_for_the_send_test_unless_given() -> None:
    assert CheckOptions(send_test=True).deadline == 180
    assert CheckOptions(send_test=True, send_timeout=10).deadline == 70
    assert CheckOptions(send_test=True, deadline=30).deadline == 30
    assert CheckOptions().deadline == 60
    assert CheckOptions(blocklist_zones=("ip:zen.bl.test",)).deliverability


@pytest.mark.parametrize(
    "bad",
    [
        {"send_to": "two@@x.test"},
        {"send_to": "a@b.test\r\nRCPT TO:<c@d.test>"},
        {"test_headers": (("X-A", "b\r\nBcc: x"),)},
        {"test_headers": (("X A", "b"),)},
    ],
)
def test_unsafe_send_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CheckOptions(**bad)


# --- pure parts ----------------------------------------------------------------------------------


def test_list_special_use_first_then_usual_names() -> None:
    lines = [
        '(\\HasNoChildren \\Junk) "." Junk',
        '(\\HasNoChildren \\Sent) "." "Sent Items"',
        '(\\HasNoChildren) "/" INBOX',
        "List completed.",
    ]
    folders = parse_list(lines)
    assert (folders.junk, folders.sent, folders.junk_by) == ("Junk", "Sent Items", "special-use")
    by_name = parse_list(['(\\HasNoChildren) "/" "[Gmail]/Spam"', '(\\HasNoChildren) "/" INBOX'])
    assert (by_name.junk, by_name.junk_by, by_name.sent) == ("[Gmail]/Spam", "name", None)
    assert parse_list(["garbage", ""]).junk is None


def test_search_results_as_aioimaplib_gives_them() -> None:
    assert parse_search(["1 7", "Search completed (0.001 + 0.000 secs)."]) == [1, 7]
    assert parse_search(["SEARCH 3", "done"]) == [3]
    assert parse_search(["", "Search completed 5."]) == []


RECEIVED = b"""\
Authentication-Results: mx.elsewhere.test; dkim=pass header.d=peer.test;
\tspf=softfail smtp.mailfrom=sam@peer.test; dmarc=pass
Received: from mail.peer.test (mail.peer.test [192.0.2.25])
\tby mx.elsewhere.test (Postfix) with ESMTPS id 1234
Received: from [10.1.2.3] (client.example [10.1.2.3])
\tby mail.peer.test (Postfix) with ESMTPSA id 99
From: Sam <sam@peer.test>

body
"""


def test_the_relay_hop_skips_authenticated_submission_and_local_delivery() -> None:
    message = email.message_from_bytes(RECEIVED)
    hop = relay_hop(message)
    assert hop is not None and hop[0] == "192.0.2.25"
    submitted_only = email.message_from_bytes(
        b"Received: from mail.lab.test by mail.lab.test with LMTP id 1\n"
        b"Received: from [127.0.0.1] (localhost [127.0.0.1]) by mail.lab.test with ESMTPSA id 2\n\nx\n"
    )
    assert relay_hop(submitted_only) is None


def test_authentication_results_are_read_not_trusted() -> None:
    results = parse_authentication_results(email.message_from_bytes(RECEIVED))
    assert results == [
        {"authserv_id": "mx.elsewhere.test", "results": {"dkim": "pass", "spf": "softfail", "dmarc": "pass"}}
    ]


def test_diagnose_ranks_a_refusal_to_send_with_the_logins_and_the_landing_above_the_records() -> None:
    from inboxcheck._diagnose import weight_of

    assert (
        weight_of("smtp.auth.rejected")
        > weight_of("smtp.send.send_as_denied")
        > weight_of("smtp.tls.expired")
    )
    assert weight_of("send.permission.sender_refused") > weight_of("smtp.connect.refused")
    assert weight_of("send.find.junk") > weight_of("dns.blocklist.listed") > weight_of("dns.mx.missing")
    assert weight_of("send.dkim.unsigned") > weight_of("dns.dkim.missing")
    assert weight_of("send.cleanup.failed") == 0
