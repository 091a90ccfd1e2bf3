"""Each discovery source served for real by the lab: autoconfig files from nginx over HTTPS with the
lab CA (good, huge, slow, malformed, an XML bomb, plain-HTTP only, implicit TLS off 465), SRV zones
in NSD (inside, outside, ".", disagreeing with autoconfig), and domains whose MX is a provider's.
nginx's access log is the proof of what was fetched, and how."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from inboxcheck._endpoint import TlsMode
from inboxcheck._models import Severity, Verdict
from inboxcheck.discovery import CredentialUse, Discovery, MailProtocol, ProbeResult, SourceKind, discover
from lab import Lab

pytestmark = pytest.mark.lab


async def run(lab: Lab, address: str, **kwargs: Any) -> Discovery:
    address_, port = lab.nameserver
    options: dict[str, Any] = {"timeout": 3, "deadline": 30} | kwargs
    return await discover(
        address,
        nameservers=[f"{address_}:{port}"],
        ca_file=lab.ca_file,
        autoconfig_port=lab.https_port,
        **options,
    )


def access_lines(lab: Lab, host: str) -> list[str]:
    """nginx's lines for ``host`` (it writes a line as a request ends: wait a moment for it)."""
    time.sleep(0.3)
    return [line for line in lab.access_log.read_text().splitlines() if f" host={host} " in line]


def codes(result: Discovery) -> set[str]:
    return {f.code for f in result.findings}


async def test_autoconfig_alone_over_verified_https(lab: Lab) -> None:
    # The file names mail.lab.test, outside ac-good.test: trusted only when the user says so.
    result = await run(lab, "jane@ac-good.test", trust_hosts=["mail.lab.test"])
    assert result.verdict is Verdict.PASS, result.findings
    smtp, imap = result.chosen(MailProtocol.SMTP), result.chosen(MailProtocol.IMAP)
    assert smtp is not None and imap is not None
    assert (smtp.port, smtp.tls, smtp.source) == (
        lab.smtp["submission"].port,
        TlsMode.STARTTLS,
        SourceKind.AUTOCONFIG,
    )
    assert (imap.port, imap.tls) == (lab.imap["imaps"].port, TlsMode.IMPLICIT)
    assert smtp.username == "jane@ac-good.test"  # %EMAILADDRESS% filled
    [line] = [line for line in access_lines(lab, "autoconfig.ac-good.test") if "jane@ac-good.test" in line]
    assert " https " in line and "sni=autoconfig.ac-good.test" in line and '" 200 ' in line


async def test_an_autoconfig_host_outside_the_domain_is_probed_never_chosen(lab: Lab) -> None:
    result = await run(lab, "jane@ac-good.test", smtp_password="Never-Sent-1")
    working = [c for c in result.candidates if c.result.works]
    assert working and all(c.credential is CredentialUse.WITHHELD and not c.chosen for c in working)
    assert {"discover.untrusted_host", "discover.could_not_tell"} <= codes(result)
    assert result.account is None and result.verdict is Verdict.ERROR


@pytest.mark.parametrize(
    ("domain", "code", "kwargs"),
    [
        ("ac-huge.test", "discover.autoconfig.too_large", {}),
        ("ac-slow.test", "discover.autoconfig.timeout", {"timeout": 1}),
        ("ac-malformed.test", "discover.autoconfig.malformed", {}),
        ("ac-bomb.test", "discover.autoconfig.forbidden", {}),
    ],
)
async def test_a_bad_autoconfig_file_is_reported_and_ignored(
    lab: Lab, domain: str, code: str, kwargs: dict[str, Any]
) -> None:
    started = time.monotonic()
    result = await run(lab, f"jane@{domain}", probe=False, **kwargs)
    assert code in codes(result)
    assert not any(c.source is SourceKind.AUTOCONFIG for c in result.candidates)
    assert all(c.source is SourceKind.GUESS for c in result.candidates)
    assert time.monotonic() - started < 20


async def test_autoconfig_over_plain_http_only_is_never_fetched(lab: Lab) -> None:
    result = await run(lab, "jane@ac-httponly.test", probe=False)
    assert "discover.autoconfig.tls" in codes(result)
    assert not any(c.source is SourceKind.AUTOCONFIG for c in result.candidates)
    lines = access_lines(lab, "autoconfig.ac-httponly.test") + access_lines(lab, "ac-httponly.test")
    assert not any(" http " in line for line in lines)  # the plain-HTTP server was never asked


async def test_implicit_tls_smtp_off_465_is_passed_over_with_the_reason(lab: Lab) -> None:
    result = await run(lab, "jane@ac-port.test", trust_hosts=["mail.lab.test"])
    smtp = next(c for c in result.candidates if c.protocol is MailProtocol.SMTP)
    assert (smtp.port, smtp.tls) == (lab.smtp["submissions"].port, TlsMode.IMPLICIT)
    assert smtp.result is ProbeResult.NOT_EXPRESSIBLE
    assert "only on port 465" in smtp.reason
    finding = next(f for f in result.findings if f.code == "discover.not_expressible")
    assert finding.severity is Severity.WARN
    # The only SMTP endpoint named cannot be written down: nothing works (IMAP alone is no pair).
    assert result.verdict is Verdict.FAIL and result.account is None
    assert result.findings[-1].evidence["missing"] == ["SMTP"]


async def test_srv_inside_the_domain(lab: Lab) -> None:
    result = await run(lab, "jane@srv-inside.test")
    assert result.verdict is Verdict.PASS
    smtp, imap = result.chosen(MailProtocol.SMTP), result.chosen(MailProtocol.IMAP)
    assert smtp is not None and imap is not None
    assert smtp.host == imap.host == "mail.srv-inside.test" and smtp.trusted and imap.trusted
    assert smtp.source is SourceKind.SRV and smtp.port == lab.smtp["submission"].port
    assert imap.tls is TlsMode.IMPLICIT  # RFC 8314: _imaps before _imap


async def test_srv_outside_the_domain_but_under_its_mx_hosts_domain_is_trusted(lab: Lab) -> None:
    result = await run(lab, "jane@srv-outside.test")
    chosen = [c for c in result.candidates if c.chosen]
    assert {c.host for c in chosen} == {"mail.elsewhere.test"}
    assert all(c.trusted for c in chosen)  # the domain's MX is mail.elsewhere.test
    assert "discover.untrusted_host" not in codes(result)
    # Autoconfig was asked for the MX host's domain too (Thunderbird's order), over HTTPS.
    asked = [lookup.target for lookup in result.lookups if lookup.source is SourceKind.AUTOCONFIG]
    url = f"https://autoconfig.elsewhere.test:{lab.https_port}/mail/config-v1.1.xml"
    assert f"{url}?emailaddress=jane@srv-outside.test" in asked


async def test_srv_dot_target_means_not_offered(lab: Lab) -> None:
    result = await run(lab, "jane@srv-none.test")
    not_offered = [f for f in result.findings if f.code == "discover.srv.not_offered"]
    assert {f.evidence["record"] for f in not_offered} == {
        "_submission._tcp.srv-none.test",
        "_imap._tcp.srv-none.test",
    }
    # What is left for SMTP is implicit TLS off 465: nothing the payload can say.
    assert result.verdict is Verdict.FAIL


async def test_srv_and_autoconfig_disagree(lab: Lab) -> None:
    result = await run(lab, "jane@srv-disagree.test")
    disagree = {f.evidence["protocol"] for f in result.findings if f.code == "discover.sources_disagree"}
    assert disagree == {"smtp", "imap"}
    smtp, imap = result.chosen(MailProtocol.SMTP), result.chosen(MailProtocol.IMAP)
    assert smtp is not None and imap is not None
    # SMTP: autoconfig's implicit TLS off 465 cannot be written down, so SRV's STARTTLS wins.
    assert (smtp.source, smtp.tls) == (SourceKind.SRV, TlsMode.STARTTLS)
    # IMAP: both work; SRV's is in the domain (a password may go there) and implicit TLS.
    assert (imap.source, imap.host, imap.tls) == (SourceKind.SRV, "mail.srv-disagree.test", TlsMode.IMPLICIT)
    assert result.verdict is Verdict.PASS


async def test_sources_that_agree_are_one_candidate_and_log_in(lab: Lab) -> None:
    alice = lab.user("alice")
    result = await run(lab, alice.email, smtp_password=alice.password)
    assert result.verdict is Verdict.PASS
    smtp = result.chosen(MailProtocol.SMTP)
    assert smtp is not None and smtp.result is ProbeResult.LOGGED_IN
    assert {text.split(" ")[0] for text in smtp.sources} == {"autoconfig", "srv"}
    assert "discover.sources_disagree" not in codes(result)


@pytest.mark.parametrize(
    ("domain", "preset", "inbox_type", "smtp_host"),
    [
        ("disc-google.test", "google-workspace", "GOOGLE_WORKSPACE", "smtp.gmail.com"),
        ("disc-outlook.test", "microsoft-365", "OUTLOOK_365", "smtp.office365.com"),
    ],
)
async def test_a_domain_whose_mx_is_a_provider_gets_the_providers_settings(
    lab: Lab, domain: str, preset: str, inbox_type: str, smtp_host: str
) -> None:
    # probe=False: the settings are the provider's; no test ever connects to a real provider.
    result = await run(lab, f"jane@{domain}", probe=False)
    assert result.preset == preset
    assert result.account is not None
    assert result.account["inbox_type"] == inbox_type and result.account["smtp_host"] == smtp_host
    assert re.match(rf"preset {preset} \(MX ", result.filled["smtp_host"])
    assert all(c.source is SourceKind.PRESET and c.trusted for c in result.candidates)
