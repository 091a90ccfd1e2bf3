"""Verify the test message as it arrived: DKIM, SPF, DMARC, ARC, and what the receiver said.

DKIM signatures are checked with dkimpy, whose DNS lookups are answered from keys this check
fetched first through the run's DNS client (dkimpy's own resolver, the system's, is never asked).
SPF is evaluated (by the project's one evaluator, dns/spf_eval.py) for the IP address of the first
server-to-server hop in the ``Received`` chain; a message that never left the provider (submitted
and delivered by the same system, as a message to oneself usually is) has no such hop, and the check
says so rather than judge the submitting client's address. DMARC follows from those two, for the
From domain's published policy (RFC 7489 section 4.2: an aligned DKIM pass or an aligned SPF pass).
The receiver's ``Authentication-Results`` are shown and compared with these results, never taken as
they are: a header is only text.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.checks.dns.treewalk import discover_policy, organisational_domain, same_organisation
from inboxcheck.checks.send.imap import LANDING_FACT, Landing
from inboxcheck.dns.client import DnsAnswer
from inboxcheck.dns.records.dmarc import Alignment, DmarcRecord, Policy, parse_dmarc
from inboxcheck.dns.spf_eval import evaluate

__all__ = ["check_send_verify", "parse_authentication_results", "relay_hop"]

_TAG: Final = re.compile(r"(?:^|;)\s*([a-z])\s*=\s*([^;]*)", re.IGNORECASE)
_IP_LITERAL: Final = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_WITH: Final = re.compile(r"\bwith\s+([A-Za-z0-9]+)", re.IGNORECASE)
_RESULT: Final = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*([A-Za-z]+)")
# RFC 3848 / 8314: the protocols of a hop between two servers; an "A" suffix means an authenticated
# submission, LMTP a local delivery.
_RELAY_PROTOCOLS: Final = frozenset({"smtp", "esmtp", "esmtps", "utf8smtp", "utf8smtps"})


def _tags(header: str) -> dict[str, str]:
    unfolded = re.sub(r"\s+", " ", header)
    return {name.lower(): value.strip() for name, value in _TAG.findall(unfolded)}


def relay_hop(message: Message) -> tuple[str, str] | None:
    """The address and ``Received`` line of the newest server-to-server hop, or None."""
    for received in message.get_all("Received") or []:
        text = re.sub(r"\s+", " ", str(received))
        protocol = _WITH.search(text)
        if protocol is None or protocol.group(1).lower() not in _RELAY_PROTOCOLS:
            continue
        head = text.split(" by ", 1)[0]
        for literal in _IP_LITERAL.findall(head):
            try:
                return str(ipaddress.ip_address(literal)), text[:500]
            except ValueError:
                continue
    return None


def parse_authentication_results(message: Message) -> list[dict[str, JsonValue]]:
    """Each ``Authentication-Results`` header (RFC 8601): who wrote it, and method -> result."""
    out: list[dict[str, JsonValue]] = []
    for header in message.get_all("Authentication-Results") or []:
        parts = re.sub(r"\s+", " ", str(header)).split(";")
        results: dict[str, JsonValue] = {}
        for part in parts[1:]:
            match = _RESULT.match(part)
            if match:
                results.setdefault(match.group(1).lower(), match.group(2).lower())
        out.append({"authserv_id": parts[0].strip()[:200], "results": results})
    return out


@dataclass
class _Dkim:
    domain: str
    selector: str
    result: str  # pass, fail, temperror (could not tell)
    reason: str = ""
    aligned: bool = False


@dataclass
class _Keys:
    """Key records fetched through the run's DNS client, for dkimpy to read."""

    texts: dict[str, bytes] = field(default_factory=dict)
    unsure: set[str] = field(default_factory=set)

    def lookup(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        return self.texts.get(key)


async def _fetch_keys(ctx: CheckContext, names: set[str]) -> _Keys:
    keys = _Keys()
    for name in sorted(names):
        answer = await ctx.dns.query(name, "TXT")
        if answer.ok:
            keys.texts[name] = b"".join(b"".join(strings) for strings in answer.text_strings()[:1])
        elif not answer.definite:
            keys.unsure.add(name)
    return keys


async def _aligned(lookups: Lookups, domain: str, from_domain: str, mode: Alignment) -> bool:
    """DMARC identifier alignment: the same name (strict), or the same organisational domain by the
    DNS tree walk (relaxed), the rule the DMARC check uses; a walk that could not tell is not aligned."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if domain == from_domain or mode is Alignment.STRICT:
        return domain == from_domain
    ours = await organisational_domain(lookups, domain)
    return same_organisation(ours, await organisational_domain(lookups, from_domain))


class _Keep(logging.Handler):
    """Keeps what dkimpy logs about a failed signature: the only place it says why."""

    def __init__(self, into: list[str]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def _verify_dkim(raw: bytes, signatures: list[dict[str, str]], keys: _Keys) -> list[_Dkim]:
    import dkim  # dkimpy: imported here, so `import inboxcheck` stays fast

    results: list[_Dkim] = []
    for index, tags in enumerate(signatures):
        domain, selector = tags.get("d", ""), tags.get("s", "")
        name = f"{selector}._domainkey.{domain}".lower()
        if name in keys.unsure:
            results.append(_Dkim(domain, selector, "temperror", f"the key {name} could not be looked up"))
            continue
        if name not in keys.texts:
            results.append(_Dkim(domain, selector, "fail", f"no key is published at {name}"))
            continue
        problems: list[str] = []
        logger = logging.Logger("inboxcheck.dkim")
        logger.addHandler(_Keep(problems))
        checker = dkim.DKIM(raw, logger=logger, minkey=1024)
        try:
            ok = checker.verify(idx=index, dnsfunc=keys.lookup)
        except dkim.DKIMException as exc:
            ok, problems = False, [*problems, str(exc)]
        reason = "" if ok else (problems[-1] if problems else "the signature does not match the message")
        results.append(_Dkim(domain, selector, "pass" if ok else "fail", reason[:300]))
    return results


async def _dmarc_record(lookups: Lookups, from_domain: str) -> tuple[DmarcRecord | None, bool]:
    """The DMARC record that governs ``from_domain`` (by the DNS tree walk, as the DMARC check finds
    it), and whether DNS answered."""
    walk = await discover_policy(lookups, from_domain)
    if walk.unknown is not None:
        return None, False
    if walk.found is None or len(walk.found.texts) != 1:
        return None, True
    try:
        return parse_dmarc(walk.found.texts[0]), True
    except ValueError:
        return None, True


async def _tell_the_dkim_check(ctx: CheckContext, out: Outcome, passing: list[_Dkim]) -> None:
    """The message proves a key the DNS check did not find (its selector was not one it tried)."""
    dns_dkim = await ctx.result_of("dns.dkim")
    if not passing or dns_dkim is None or not any(f.code == "dns.dkim.missing" for f in dns_dkim.findings):
        return
    found = passing[0]
    out.add(
        "send.dkim.selector_unknown",
        Severity.INFO,
        f"The test message is signed with a valid key at selector {found.selector} (d={found.domain}), a "
        "selector the DKIM check did not try: its 'no DKIM key found' does not hold for this mailbox.",
        fix=f"Run again with --dkim-selector {found.selector} for the DNS checks to judge that key.",
        selector=found.selector,
        d=found.domain,
    )


def _resolver(lookups: Lookups) -> Callable[[str, str], Awaitable[DnsAnswer]]:
    """The run's lookups (CNAMEs followed, each remembered) as the SPF evaluator asks them."""

    async def resolve(name: str, rdtype: str) -> DnsAnswer:
        return (await lookups.get(name, rdtype)).answer

    return resolve


_SPF_CODES: Final = {
    "fail": "send.spf.fail",
    "softfail": "send.spf.softfail",
    "permerror": "send.spf.permerror",
}


async def check_send_verify(ctx: CheckContext) -> Outcome:
    """Check the signatures and the authentication of the message that arrived."""
    await ctx.result_of("send.find")
    landing = ctx.facts.get(LANDING_FACT)
    if not isinstance(landing, Landing):
        return Outcome.skip("not verified: the test message was not found")
    if landing.raw is None:
        return Outcome.skip("not verified: the server would not hand back the message")
    raw = landing.raw
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    from_domain = parseaddr(str(message.get("From", "")))[1].rpartition("@")[2].lower()
    out = Outcome(summary="")
    signatures = [_tags(str(h)) for h in message.get_all("DKIM-Signature") or []]
    arc_headers = [_tags(str(h)) for h in message.get_all("ARC-Seal") or []] + [
        _tags(str(h)) for h in message.get_all("ARC-Message-Signature") or []
    ]
    names = {
        f"{tags.get('s', '')}._domainkey.{tags.get('d', '')}".lower()
        for tags in [*signatures, *arc_headers]
        if tags.get("s") and tags.get("d")
    }
    keys = await _fetch_keys(ctx, names)
    lookups = Lookups(ctx)
    dmarc, dmarc_known = await _dmarc_record(lookups, from_domain)
    adkim = dmarc.adkim if dmarc else Alignment.RELAXED
    aspf = dmarc.aspf if dmarc else Alignment.RELAXED

    dkim_results = _verify_dkim(raw, signatures, keys)
    for result in dkim_results:
        result.aligned = await _aligned(lookups, result.domain, from_domain, adkim)
    out.details["from_domain"] = from_domain
    out.details["dkim"] = [
        {"d": r.domain, "s": r.selector, "result": r.result, "aligned": r.aligned, "reason": r.reason}
        for r in dkim_results
    ]
    dkim_aligned_pass = any(r.result == "pass" and r.aligned for r in dkim_results)
    if not dkim_results:
        out.add(
            "send.dkim.unsigned",
            Severity.FAIL,
            f"The test message arrived without a DKIM signature: receivers cannot tell that "
            f"{from_domain} sent it, and Gmail and Yahoo require DKIM of bulk senders.",
            fix="Turn on DKIM signing for the domain at the mail provider and publish the key record it "
            "gives (a TXT or CNAME at SELECTOR._domainkey." + from_domain + ").",
            from_domain=from_domain,
        )
    elif not any(r.result == "pass" for r in dkim_results):
        unsure = [r for r in dkim_results if r.result == "temperror"]
        first = (unsure or dkim_results)[0]
        out.add(
            "send.dkim.unavailable" if unsure else "send.dkim.failed",
            Severity.ERROR if unsure else Severity.FAIL,
            f"The DKIM key for d={first.domain} s={first.selector} could not be looked up, so "
            "inboxcheck could not tell whether the signature holds."
            if unsure
            else f"The test message's DKIM signature (d={first.domain}, s={first.selector}) does not "
            f"verify: {first.reason}.",
            fix="Check the DNS servers this machine uses, then try again."
            if unsure
            else f"Publish the key the provider shows for selector {first.selector} at "
            f"{first.selector}._domainkey.{first.domain}, exactly as given (a changed or truncated "
            "key fails).",
            signatures=out.details["dkim"],
        )
    elif not dkim_aligned_pass:
        passing = next(r for r in dkim_results if r.result == "pass")
        out.add(
            "send.dkim.unaligned",
            Severity.WARN,
            f"The test message is DKIM-signed by {passing.domain}, not by the From domain {from_domain}: "
            "the signature does not count for DMARC.",
            fix=f"Set up DKIM for {from_domain} itself at the provider (custom domain signing), so that "
            f"d={from_domain}.",
            d=passing.domain,
            from_domain=from_domain,
        )

    await _tell_the_dkim_check(ctx, out, [r for r in dkim_results if r.result == "pass" and r.aligned])

    hop = relay_hop(message)
    envelope = parseaddr(str(message.get("Return-Path", "")))[1].rpartition("@")[2].lower() or from_domain
    spf_result = "none"
    if hop is None:
        out.details["spf"] = {"result": "not_applicable", "reason": "no server-to-server hop in Received"}
        out.add(
            "send.spf.no_relay_hop",
            Severity.INFO,
            "The test message never crossed from one server to another (it was submitted and delivered "
            "by the same provider), so there is no sending address to test SPF against.",
            fix="To test SPF on a real hop, run again with --to an address at another provider.",
        )
    else:
        ip, line = hop
        sender = parseaddr(str(message.get("Return-Path", "")))[1] or f"postmaster@{envelope}"
        evaluation = await evaluate(_resolver(lookups), ip, envelope, sender=sender)
        spf_result = evaluation.result.value
        out.details["spf"] = {
            "ip": ip,
            "domain": envelope,
            "result": spf_result,
            "received": line,
            "mechanism": evaluation.mechanism,
            "reason": evaluation.reason,
        }
        if spf_result in ("fail", "softfail", "permerror"):
            out.add(
                _SPF_CODES[spf_result],
                Severity.FAIL if spf_result != "softfail" else Severity.WARN,
                f"SPF for {envelope} gives {spf_result} for the sending server {ip}: receivers may treat "
                "the mail as forged.",
                fix=f"Add the provider's SPF include (or ip4:{ip}) to the SPF record of {envelope}.",
                ip=ip,
                domain=envelope,
                received=line,
            )
        elif spf_result == "temperror":
            out.add(
                "send.spf.unavailable",
                Severity.ERROR,
                f"SPF for {envelope} could not be evaluated (a lookup failed), so inboxcheck could not tell.",
                fix="Check the DNS servers this machine uses, then try again.",
                ip=ip,
                domain=envelope,
            )
    spf_aligned_pass = spf_result == "pass" and await _aligned(lookups, envelope, from_domain, aspf)

    dmarc_result = "pass" if dkim_aligned_pass or spf_aligned_pass else "fail"
    out.details["dmarc"] = {
        "result": dmarc_result if dmarc else ("none" if dmarc_known else "temperror"),
        "policy": dmarc.policy.value if dmarc else None,
        "dkim_aligned": dkim_aligned_pass,
        "spf_aligned": spf_aligned_pass,
    }
    if dmarc is not None and dmarc_result == "fail":
        enforced = dmarc.policy in (Policy.QUARANTINE, Policy.REJECT)
        out.add(
            "send.dmarc.fail",
            Severity.FAIL if enforced else Severity.WARN,
            f"The test message fails DMARC for {from_domain} (policy p={dmarc.policy.value}): neither an "
            "aligned DKIM signature nor an aligned SPF pass"
            + (", so receivers will put such mail in spam or refuse it." if enforced else "."),
            fix=f"Sign mail with DKIM as {from_domain} (d={from_domain}) at the provider; that alone "
            "makes DMARC pass.",
            policy=dmarc.policy.value,
        )

    arc = [str(h)[:300] for h in message.get_all("ARC-Seal") or []]
    if arc:
        import dkim

        try:
            cv, _, comment = dkim.arc_verify(raw, dnsfunc=keys.lookup)
            chain = cv.decode() if isinstance(cv, bytes) else str(cv)
        except dkim.DKIMException as exc:
            chain, comment = "fail", str(exc)
        out.details["arc"] = {"sets": len(arc), "chain": chain, "comment": str(comment)[:300]}
        out.add(
            "send.arc.present",
            Severity.INFO,
            f"The message carries an ARC chain of {len(arc)} set(s) (result {chain}): a server on the "
            "way forwarded or changed it and vouched for the authentication results it saw.",
            sets=len(arc),
            chain=chain,
        )

    receiver = parse_authentication_results(message)
    if receiver:
        out.details["authentication_results"] = list[JsonValue](receiver)
        ours = {
            "dkim": "pass"
            if any(r.result == "pass" for r in dkim_results)
            else ("none" if not dkim_results else "fail")
        }
        if hop is not None:
            ours["spf"] = spf_result
        if dmarc is not None:
            ours["dmarc"] = dmarc_result
        differs = {
            method: {"receiver": said, "inboxcheck": ours[method]}
            for item in receiver
            for method, said in (item["results"] or {}).items()  # type: ignore[union-attr]
            if method in ours and said != ours[method]
        }
        if differs:
            out.add(
                "send.auth_results.differ",
                Severity.INFO,
                "The receiver's Authentication-Results header says otherwise than inboxcheck's own "
                "checks: "
                + ", ".join(f"{m} {d['receiver']} there, {d['inboxcheck']} here" for m, d in differs.items())
                + ".",
                fix="The header is the receiver's view (it may use other DNS or see another hop); "
                "inboxcheck's results come from the message and DNS as they are now.",
                differs=differs,  # type: ignore[arg-type]
            )
    dkim_word = (
        "DKIM pass" if dkim_aligned_pass else ("unsigned" if not dkim_results else "DKIM not aligned/passing")
    )
    out.summary = f"{dkim_word}, SPF {out.details['spf']['result']}, DMARC {out.details['dmarc']['result']}"  # type: ignore[index,call-overload]
    return out
