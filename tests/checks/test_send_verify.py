"""``send.verify`` on messages made for each case, signed with the lab's own DKIM key (the one
OpenDKIM signs with, published in the lab zone), every lookup answered by the lab's NSD.

The message a real send brings back is verified in ``tests/checks/test_send_lab.py``; here each
outcome (a broken signature, another signing domain, an SPF verdict on a relay hop, ARC, the
receiver's own header) is produced on purpose.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import dkim
import pytest

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Account, Severity
from inboxcheck._options import CheckOptions, parse_nameserver
from inboxcheck._presets import load_presets
from inboxcheck.checks.send.imap import LANDING_FACT, Landing
from inboxcheck.checks.send.verify import check_send_verify

pytestmark = pytest.mark.lab


def _message(
    sender: str, *, received: str | None = None, return_path: str | None = None, extra: str = ""
) -> bytes:
    message = EmailMessage()
    message["From"] = f"Alice Lab <{sender}>"
    message["To"] = sender
    message["Subject"] = "inboxcheck test message"
    message["Message-ID"] = "<1@lab.test>"
    message.set_content("The body the signature covers.\n")
    head = ""
    if return_path:
        head += f"Return-Path: <{return_path}>\r\n"
    if received:
        head += f"Received: {received}\r\n"
    return (head + extra).encode() + message.as_bytes().replace(b"\n", b"\r\n")


def _sign(lab: Any, raw: bytes, *, domain: str = "lab.test", selector: str | None = None) -> bytes:
    key = lab.dkim_key
    signature = dkim.sign(
        raw,
        (selector or key.selector).encode(),
        domain.encode(),
        key.private_key_pem,
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return bytes(signature) + raw


async def _verify(lab: Any, raw: bytes) -> Outcome:
    address, port = lab.nameserver
    options = CheckOptions(timeout=3.0, nameservers=(parse_nameserver(f"{address}:{port}"),))
    account = Account.model_validate(lab.account("alice@lab.test", smtp="submission", imap="imaps"))
    ctx = CheckContext(account, options=options, presets=load_presets(), match=None)
    ctx.facts[LANDING_FACT] = Landing(folder="INBOX", junk=False, uid=1, seconds=0.1, raw=raw, method="idle")
    return await check_send_verify(ctx)


def _codes(out: Outcome) -> list[str]:
    return [f.code for f in out.findings]


def _finding(out: Outcome, code: str) -> Any:
    return next(f for f in out.findings if f.code == code)


async def test_a_valid_aligned_signature_passes_dkim_and_dmarc(lab: Any) -> None:
    out = await _verify(lab, _sign(lab, _message("alice@lab.test")))
    assert _codes(out) == ["send.spf.no_relay_hop"]
    assert out.details["dmarc"] == {
        "result": "pass",
        "policy": "quarantine",
        "dkim_aligned": True,
        "spf_aligned": False,
    }


async def test_a_changed_body_breaks_the_signature(lab: Any) -> None:
    raw = _sign(lab, _message("alice@lab.test")).replace(b"The body", b"A body")
    out = await _verify(lab, raw)
    finding = _finding(out, "send.dkim.failed")
    assert finding.severity is Severity.FAIL
    # Without a passing aligned signature or SPF, lab.test's p=quarantine applies.
    assert _finding(out, "send.dmarc.fail").severity is Severity.FAIL


async def test_a_signature_without_a_published_key_fails_and_names_it(lab: Any) -> None:
    out = await _verify(lab, _sign(lab, _message("alice@lab.test"), selector="nokey"))
    finding = _finding(out, "send.dkim.failed")
    assert "nokey._domainkey.lab.test" in finding.message


async def test_a_key_that_cannot_be_looked_up_is_could_not_tell(lab: Any) -> None:
    # The lab's NSD refuses names outside its zones: the key lookup gets no answer.
    out = await _verify(lab, _sign(lab, _message("alice@lab.test"), domain="elsewhere.invalid"))
    assert _finding(out, "send.dkim.unavailable").severity is Severity.ERROR


async def test_a_signature_of_another_domain_is_not_aligned(lab: Any) -> None:
    out = await _verify(lab, _sign(lab, _message("carol@unsigned.test")))
    finding = _finding(out, "send.dkim.unaligned")
    assert finding.severity is Severity.WARN
    assert finding.evidence["d"] == "lab.test"


@pytest.mark.parametrize(
    ("return_path", "ip", "code", "severity"),
    [
        ("bounce@lab.test", "192.0.2.25", "send.spf.fail", Severity.FAIL),
        ("bounce@google-style.test", "192.0.2.25", "send.spf.softfail", Severity.WARN),
        ("bounce@spf-include-missing.test", "192.0.2.25", "send.spf.permerror", Severity.FAIL),
    ],
)
async def test_spf_is_judged_on_the_relay_hop(
    lab: Any, return_path: str, ip: str, code: str, severity: Severity
) -> None:
    received = f"from relay.elsewhere.test (relay.elsewhere.test [{ip}]) by mx.lab.test with ESMTPS id 1"
    raw = _sign(lab, _message("alice@lab.test", received=received, return_path=return_path))
    out = await _verify(lab, raw)
    assert _finding(out, code).severity is severity
    spf: Any = out.details["spf"]
    assert (spf["ip"], spf["domain"]) == (ip, return_path.split("@")[1])


async def test_spf_passes_through_includes_and_then_aligns(lab: Any) -> None:
    received = "from relay.google-style.test ([198.51.2.7]) by mx.lab.test with ESMTP id 2"
    raw = _message("alice@lab.test", received=received, return_path="bounce@lab.test")
    out = await _verify(lab, raw.replace(b"bounce@lab.test", b"bounce@google-style.test"))
    spf: Any = out.details["spf"]
    assert spf["result"] == "pass"
    # Unsigned, and SPF passes for google-style.test, which is not the From domain: DMARC fails.
    assert out.details["dmarc"]["spf_aligned"] is False  # type: ignore[index,call-overload]
    assert "send.dmarc.fail" in _codes(out)
    own = _message(
        "alice@lab.test", received=received.replace("198.51.2.7", "127.0.0.9"), return_path="b@lab.test"
    )
    out = await _verify(lab, own)
    assert out.details["dmarc"]["result"] == "pass"  # type: ignore[index,call-overload]
    assert out.details["dmarc"]["spf_aligned"] is True  # type: ignore[index,call-overload]


async def test_spf_that_cannot_be_evaluated_is_could_not_tell(lab: Any) -> None:
    received = "from relay.elsewhere.test ([192.0.2.25]) by mx.lab.test with ESMTPS id 3"
    raw = _sign(lab, _message("alice@lab.test", received=received, return_path="b@elsewhere.invalid"))
    out = await _verify(lab, raw)
    assert _finding(out, "send.spf.unavailable").severity is Severity.ERROR


async def test_arc_is_reported_and_the_receivers_header_is_compared_not_trusted(lab: Any) -> None:
    extra = (
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=lab.test; s=nokey; t=1700000000; b=AAAA\r\n"
        "Authentication-Results: mx.elsewhere.test; dkim=fail header.d=lab.test; dmarc=fail\r\n"
    )
    out = await _verify(lab, _sign(lab, _message("alice@lab.test", extra=extra)))
    arc = _finding(out, "send.arc.present")
    assert arc.severity is Severity.INFO and arc.evidence["sets"] == 1
    differ = _finding(out, "send.auth_results.differ")
    assert differ.evidence["differs"] == {
        "dkim": {"receiver": "fail", "inboxcheck": "pass"},
        "dmarc": {"receiver": "fail", "inboxcheck": "pass"},
    }
    # inboxcheck's own verdict stands.
    assert out.details["dmarc"]["result"] == "pass"  # type: ignore[index,call-overload]


async def test_an_unsigned_message_of_a_domain_without_dmarc_has_no_dmarc_verdict(lab: Any) -> None:
    out = await _verify(lab, _message("carol@unsigned.test"))
    assert _finding(out, "send.dkim.unsigned").severity is Severity.FAIL
    assert "send.dmarc.fail" not in _codes(out)
    assert out.details["dmarc"]["result"] == "none"  # type: ignore[index,call-overload]


async def test_a_dmarc_failure_under_p_none_is_a_warning(lab: Any) -> None:
    out = await _verify(lab, _message("sam@dmarc-none.test"))
    assert _finding(out, "send.dmarc.fail").severity is Severity.WARN
