"""DKIM (RFC 6376, RFC 8301): keys at the preset's, the user's and common selectors, judged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.checks.dns.lookups import (
    Lookup,
    Lookups,
    finish,
    report_unavailable,
)
from inboxcheck.dns.client import DnsStatus
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.dkim import DkimKey, KeyType, is_dkim_record, parse_dkim

# --------------------------------------------------------------------------------------------------
# DKIM

# Selectors tried on every domain, after the preset's and the user's: the ones big senders and
# hosting panels use most (provider-facts, "DNS expectations").
COMMON_DKIM_SELECTORS: Final = (
    "google",
    "selector1",
    "selector2",
    "default",
    "dkim",
    "mail",
    "k1",
    "k2",
    "s1",
    "s2",
    "fm1",
    "fm2",
    "zoho",
    "protonmail",
)


@dataclass
class DkimFacts:
    selectors_tried: list[str] = field(default_factory=list)
    usable: list[str] = field(default_factory=list)  # selectors with a key receivers will honour
    found: list[str] = field(default_factory=list)
    unknown: bool = False


def _clean(selectors: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(s.strip().strip(".").lower() for s in selectors if s.strip().strip(".")))


async def check_dkim(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    lookups = Lookups(ctx)
    facts = DkimFacts()
    ctx.facts["dns.dkim"] = facts
    preset = ctx.preset
    named = _clean([*(preset.dns.dkim_selectors if preset else ()), *ctx.options.dkim_selectors])
    guessed = [s for s in _clean(COMMON_DKIM_SELECTORS) if s not in named]
    out = Outcome(summary=f"{domain} publishes a DKIM key")
    parent, named_answers = await asyncio.gather(
        lookups.get(f"_domainkey.{domain}", "TXT"),
        asyncio.gather(*(lookups.get(f"{s}._domainkey.{domain}", "TXT") for s in named)),
    )
    # RFC 8020: NXDOMAIN for _domainkey.<domain> means no name exists below it, so none of the
    # guessed selectors can hold a key; the named ones (preset, --dkim-selector) are asked anyway.
    no_keys_below = parent.answer.status is DnsStatus.NXDOMAIN
    if no_keys_below:
        guessed = []
        out.details["no_names_below"] = f"_domainkey.{domain} does not exist (NXDOMAIN)"
    elif not parent.definite:
        guessed = []  # the server cannot answer for this domain: guessing would only wait again
    guessed_answers = await asyncio.gather(*(lookups.get(f"{s}._domainkey.{domain}", "TXT") for s in guessed))
    selectors = [*named, *guessed]
    answers = [*named_answers, *guessed_answers]
    facts.selectors_tried = selectors
    keys: dict[str, JsonValue] = {}
    for selector, lookup in zip(selectors, answers, strict=True):
        if not lookup.answer.ok:
            continue
        texts = [t for t in lookup.answer.texts() if is_dkim_record(t)]
        if not texts:
            continue
        facts.found.append(selector)
        for text in texts:
            info = _judge_key(ctx, out, selector, lookup, text, facts)
            keys[selector] = info
    out.details.update(selectors_tried=list(selectors), keys=keys)
    # A revoked key is only a failure when nothing else signs.
    if facts.usable:
        for finding in list(out.findings):
            if finding.code == "dns.dkim.revoked" and finding.severity is Severity.FAIL:
                index = out.findings.index(finding)
                out.findings[index] = finding.model_copy(update={"severity": Severity.WARN})
    if not facts.found:
        if report_unavailable(out, lookups, f"whether {domain} publishes a DKIM key"):
            facts.unknown = True
            out.summary = f"could not look up every DKIM selector of {domain}"
            return finish(out, lookups)
        _report_missing(ctx, out, selectors, [parent, *answers], no_keys_below=no_keys_below)
        out.summary = f"no DKIM key found for {domain}"
        return finish(out, lookups)
    if not facts.usable and report_unavailable(out, lookups, f"whether {domain} has a usable DKIM key"):
        facts.unknown = True
    if facts.usable and not out.findings:
        out.summary = f"{domain} publishes DKIM keys at {', '.join(facts.usable)}"
    elif facts.usable:
        out.summary = f"{domain} has usable DKIM keys at {', '.join(facts.usable)}, with problems"
    else:
        out.summary = f"{domain} has no usable DKIM key"
    return finish(out, lookups)


def _judge_key(
    ctx: CheckContext, out: Outcome, selector: str, lookup: Lookup, text: str, facts: DkimFacts
) -> dict[str, JsonValue]:
    domain = ctx.account.domain
    name = f"{selector}._domainkey.{domain}"
    info: dict[str, JsonValue] = {"record": text}
    if lookup.chain:
        info["cname_chain"] = list(lookup.chain)
    try:
        key: DkimKey = parse_dkim(text)
    except RecordSyntaxError as exc:
        out.add(
            "dns.dkim.syntax",
            Severity.FAIL,
            f"The DKIM key at {name} is invalid: {exc.message} (character {exc.position + 1}), so "
            f"signatures with selector {selector!r} cannot be verified.",
            fix="Publish the key exactly as your mail provider or signing software shows it.",
            selector=selector,
            record=text,
            position=exc.position,
            pointer=exc.pointer(),
            lookup=lookup.evidence(),
        )
        info["error"] = exc.message
        return info
    info.update(key_type=key.key_type.value, bits=key.bits, testing=key.testing, revoked=key.revoked)
    if key.notes:
        info["notes"] = list(key.notes)
    if key.revoked:
        out.add(
            "dns.dkim.revoked",
            Severity.FAIL,
            f"The DKIM key at {name} is revoked (empty p=), so any signature with selector "
            f"{selector!r} fails.",
            fix="Stop signing with this selector, or publish its current public key.",
            selector=selector,
            record=text,
            lookup=lookup.evidence(),
        )
        return info
    usable = True
    if key.key_type is KeyType.RSA and key.bits is not None and key.bits < 2048:
        weak = key.bits < 1024
        usable = not weak
        out.add(
            "dns.dkim.weak_key",
            Severity.FAIL if weak else Severity.WARN,
            f"The DKIM key at {name} is a {key.bits}-bit RSA key; "
            + (
                "RFC 8301 requires verifiers to reject keys under 1024 bits, so its signatures "
                "count for nothing."
                if weak
                else "RFC 8301 recommends 2048 bits, and some receivers trust shorter keys less."
            ),
            fix="Generate a 2048-bit key (in your provider's DKIM settings), publish it, and sign with it.",
            selector=selector,
            bits=key.bits,
            lookup=lookup.evidence(),
        )
    if key.testing:
        usable = False
        out.add(
            "dns.dkim.testing",
            Severity.WARN,
            f"The DKIM key at {name} is in testing mode (t=y), so receivers treat its signatures like "
            "unsigned mail.",
            fix="Remove t=y from the record once signing works.",
            selector=selector,
            record=text,
            lookup=lookup.evidence(),
        )
    info["usable"] = usable and key.usable_for_email
    if usable and key.usable_for_email and selector not in facts.usable:
        facts.usable.append(selector)
    return info


def _report_missing(
    ctx: CheckContext,
    out: Outcome,
    selectors: list[str],
    answers: Sequence[Lookup],
    *,
    no_keys_below: bool,
) -> None:
    preset = ctx.preset
    known = preset is not None and not preset.is_generic and preset.dns.dkim_selectors_known
    domain = ctx.account.domain
    if no_keys_below:
        tried = f"_domainkey.{domain} does not exist at all, so no selector can hold a key there"
    else:
        tried = f"selectors tried: {', '.join(selectors)}"
    if known and preset is not None:
        expected = ", ".join(preset.dns.dkim_selectors)
        message = (
            f"No DKIM key was found for {domain}: {preset.name} signs with selector {expected}, and "
            f"nothing is published there ({tried})."
        )
        fix = (
            preset.dns.dkim_setup
            or f"Publish the DKIM key of {preset.name} at {expected}._domainkey.{domain}."
        )
    else:
        message = (
            f"No DKIM key was found for {domain} ({tried}); the real selector may simply be one "
            "inboxcheck does not know."
        )
        setup = preset.dns.dkim_setup if preset is not None else None
        fix = (
            "Find the selector in the DKIM-Signature header (s=) of a message sent from this mailbox and "
            "run again with --dkim-selector; if mail is not signed, turn DKIM on. " + (setup or "")
        ).strip()
    out.add(
        "dns.dkim.missing",
        Severity.FAIL if known else Severity.WARN,
        message,
        fix=fix,
        selectors_tried=list(selectors),
        lookups=[lookup.describe() for lookup in answers],
    )
