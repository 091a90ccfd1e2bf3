"""login.same_mailbox: whether the SMTP and IMAP logins reach the same mailbox."""

from __future__ import annotations

import asyncio
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


async def test_different_usernames_fail_as_the_platform_requires_one_account(certs: PeerCerts) -> None:
    run = await run_both(certs, imap_username="other@peer.test")
    finding = run.finding("login.mailbox_mismatch")
    assert finding.severity is Severity.FAIL
    assert "reply tracking breaks" in finding.message
    assert "'other@peer.test'" in finding.message
    assert "--send-test" in (finding.fix or "")


async def test_a_tag_on_one_username_is_the_same_mailbox(certs: PeerCerts) -> None:
    run = await run_both(certs, imap_username="Sam+replies@peer.test")
    assert run.result.status is Status.PASS, run.result


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
        ("sam+news@peer.test", "sam@peer.test", True),  # sub-addressing (RFC 5233)
        ("jane.doe@gmail.com", "janedoe@googlemail.com", True),  # Gmail ignores dots
        ("jane.doe@peer.test", "janedoe@peer.test", False),  # dots matter elsewhere
        ("jane@me.com", "jane@icloud.com", True),  # iCloud aliases
    ],
)
def test_same_user(smtp_user: str, imap_user: str, same: bool) -> None:
    assert _same_user(smtp_user, imap_user, "peer.test") is same


def _done(name: str, status: Status, *codes: str) -> asyncio.Future[Any]:
    from inboxcheck._models import CheckResult, Finding

    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    findings = tuple(Finding(code=c, severity=Severity.WARN, message="x") for c in codes)
    future.set_result(
        CheckResult(name=name, title=name, status=status, summary="", duration_ms=0, findings=findings)
    )
    return future


@pytest.mark.parametrize(
    ("find_status", "codes", "send_to", "proved"),
    [
        (Status.PASS, (), None, True),
        (Status.WARN, ("send.find.junk",), None, True),
        (Status.ERROR, ("send.find.timeout",), None, False),
        (Status.PASS, (), "someone@else.test", False),
    ],
)
async def test_the_send_test_proves_different_usernames_are_one_mailbox(
    find_status: Status, codes: tuple[str, ...], send_to: str | None, proved: bool
) -> None:
    from inboxcheck._check import CheckContext
    from inboxcheck._models import Account
    from inboxcheck._options import CheckOptions
    from inboxcheck._presets import load_presets
    from inboxcheck.checks.login.same_mailbox import check_same_mailbox, fact_key

    account = Account.model_validate(base_payload(imap_username="mailbox-17"))
    options = CheckOptions(send_test=True, send_to=send_to)
    ctx = CheckContext(account, options=options, presets=load_presets(), match=None)
    ctx.facts[fact_key("smtp")] = _fact("smtp", "mail.peer.test")
    ctx.facts[fact_key("imap")] = _fact("imap", "mail.peer.test", username="mailbox-17")
    ctx._register("smtp.login", _done("smtp.login", Status.PASS))
    ctx._register("imap.login", _done("imap.login", Status.PASS))
    ctx._register("send.find", _done("send.find", find_status, *codes))
    out = await check_same_mailbox(ctx)
    assert [f.code for f in out.findings] == ([] if proved else ["login.mailbox_mismatch"])
    if proved:
        assert out.details["proved_by"] == "send test"
