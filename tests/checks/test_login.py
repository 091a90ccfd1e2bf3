"""login.same_mailbox: whether the SMTP and IMAP logins reach the same mailbox."""

from __future__ import annotations

from typing import Any

import pytest

from inboxcheck._endpoint import Endpoint, MailProtocol, TlsMode
from inboxcheck._models import Severity, Status
from inboxcheck.checks.login import imap, same_mailbox, smtp
from inboxcheck.checks.login.same_mailbox import LoginFact, _same_service, _same_user
from tests.peers import DnsPeer, PeerCerts
from tests.scenarios import ImapScript, Run, SmtpScript, base_payload, peer, run_check

SPECS = [*smtp.CHECKS, *imap.CHECKS, *same_mailbox.CHECKS]


@pytest.fixture(scope="module")
def certs() -> PeerCerts:
    return PeerCerts(extra_names=("smtp.peer.test", "imap.peer.test"))


async def run_both(certs: PeerCerts, *, smtp_reply: str | None = None, **changes: Any) -> Run:
    smtp_script = SmtpScript(tls=certs.server_context())
    if smtp_reply is not None:
        smtp_script.auth_reply = smtp_reply
    imap_script = ImapScript(greeting="* OK hi", implicit=True)
    async with (
        DnsPeer() as dns,
        peer(smtp_script) as smtp_server,
        peer(imap_script, tls=certs.server_context()) as imap_server,
    ):
        payload = base_payload(
            smtp_host="smtp.peer.test",
            imap_host="imap.peer.test",
            smtp_port=smtp_server.port,
            imap_port=imap_server.port,
            **changes,
        )
        return await run_check(
            SPECS, "login.same_mailbox", payload, certs=certs, nameservers=[dns.nameserver]
        )


async def test_same_username_on_the_same_service_passes(certs: PeerCerts) -> None:
    run = await run_both(certs)
    assert run.result.status is Status.PASS, run.result
    assert run.codes == []
    assert "cannot see the mailbox behind a login" in run.result.summary
    assert run.detail("smtp")["username"] == run.detail("imap")["username"] == "sam@peer.test"


async def test_different_usernames_warn_that_reply_tracking_breaks(certs: PeerCerts) -> None:
    run = await run_both(certs, imap_username="other@peer.test")
    finding = run.finding("login.mailbox_mismatch")
    assert finding.severity is Severity.WARN
    assert "reply tracking breaks" in finding.message
    assert "'other@peer.test'" in finding.message


async def test_skipped_unless_both_logins_succeed(certs: PeerCerts) -> None:
    run = await run_both(certs, smtp_reply="535 5.7.8 Error: authentication failed: x")
    assert run.result.status is Status.SKIPPED
    assert run.report.check("smtp.login").status is Status.FAIL
    assert run.report.check("imap.login").status is Status.PASS


async def test_skipped_when_smtp_is_not_checked() -> None:
    from inboxcheck._models import Account
    from inboxcheck._runner import run_checks

    report = await run_checks(Account.model_validate(base_payload()), specs=same_mailbox.CHECKS)
    assert report.check("login.same_mailbox").status is Status.SKIPPED


def _fact(protocol: str, host: str, *, username: str = "sam@peer.test", **kw: Any) -> LoginFact:
    return LoginFact(
        endpoint=Endpoint(protocol=MailProtocol(protocol), host=host, port=1, tls=TlsMode.IMPLICIT),
        username=username,
        address=kw.get("address"),
        preset_id=kw.get("preset_id"),
        cert_names=kw.get("cert_names", ()),
    )


@pytest.mark.parametrize(
    ("smtp_fact", "imap_fact", "same"),
    [
        (
            _fact("smtp", "smtp.gmail.com", preset_id="google-workspace"),
            _fact("imap", "imap.gmail.com", preset_id="google-workspace"),
            True,
        ),
        (
            _fact("smtp", "smtp.example.com", address="192.0.2.1"),
            _fact("imap", "mail.other.org", address="192.0.2.1"),
            True,
        ),
        (
            _fact("smtp", "a.example.com", cert_names=("*.host.net",)),
            _fact("imap", "b.other.org", cert_names=("*.host.net",)),
            True,
        ),
        (
            _fact("smtp", "smtp.gmail.com", preset_id="google-workspace"),
            _fact("imap", "outlook.office365.com", preset_id="microsoft-365"),
            False,
        ),
        (
            _fact("smtp", "mail.a.test", preset_id="custom"),
            _fact("imap", "mail.b.test", preset_id="custom"),
            False,
        ),
    ],
)
def test_same_service(smtp_fact: LoginFact, imap_fact: LoginFact, same: bool) -> None:
    # The rule that needs lookups (the hosts' organisational domains) is tested against the lab's
    # zones in tests/checks/test_dns.py.
    assert _same_service(smtp_fact, imap_fact)[0] is same


@pytest.mark.parametrize(
    ("smtp_user", "imap_user", "same"),
    [
        ("Sam@Peer.test", "sam@peer.test", True),
        ("sam@peer.test", "sam", True),  # iCloud: IMAP takes the local part, SMTP the address
        ("sam@other.test", "sam", False),
        ("sam@peer.test", "pat@peer.test", False),
    ],
)
def test_same_user(smtp_user: str, imap_user: str, same: bool) -> None:
    assert _same_user(smtp_user, imap_user, "peer.test") is same
