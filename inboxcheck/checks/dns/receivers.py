"""Readiness for the big receivers' sender rules (Gmail, Yahoo, Outlook.com), from the SPF, DKIM and
DMARC checks' facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import RESOURCES_FIX, CheckContext, Outcome
from inboxcheck._models import Severity, Status
from inboxcheck.checks.dns.dkim import DkimFacts
from inboxcheck.checks.dns.dmarc import DmarcFacts, starter_dmarc
from inboxcheck.checks.dns.lookups import (
    UNAVAILABLE_FIX,
)
from inboxcheck.checks.dns.spf import SpfFacts

# --------------------------------------------------------------------------------------------------
# Receiver readiness


@dataclass(frozen=True)
class Receiver:
    id: str
    name: str
    rule: str


RECEIVERS: Final = (
    Receiver(
        "gmail",
        "Gmail",
        "all senders need SPF or DKIM; over 5,000 messages a day, SPF and DKIM and a DMARC policy "
        "(p=none allowed) aligned with one of them",
    ),
    Receiver(
        "yahoo",
        "Yahoo Mail",
        "all senders need SPF or DKIM; bulk senders need SPF, DKIM and DMARC (p=none allowed), aligned",
    ),
    Receiver(
        "outlook",
        "Outlook.com",
        "over 5,000 messages a day: SPF, DKIM and DMARC p=none or stricter, aligned, or mail is rejected "
        "with 550 5.7.515",
    ),
)


async def check_receivers(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    results = {name: await ctx.result_of(name) for name in ("dns.spf", "dns.dkim", "dns.dmarc")}
    spf = ctx.facts.get("dns.spf")
    dkim = ctx.facts.get("dns.dkim")
    dmarc = ctx.facts.get("dns.dmarc")
    if not isinstance(spf, SpfFacts) or not isinstance(dkim, DkimFacts) or not isinstance(dmarc, DmarcFacts):
        return Outcome.skip("the SPF, DKIM and DMARC checks did not run")
    out = Outcome(summary=f"{domain} meets the sender rules of Gmail, Yahoo and Outlook.com")
    unknown = [name for name, result in results.items() if result is None or result.status is Status.ERROR]
    spf_ok = spf.valid and spf.record is not None
    dkim_ok = bool(dkim.usable)
    dmarc_ok = dmarc.record is not None
    state = {"spf": spf_ok, "dkim": dkim_ok, "dmarc": dmarc_ok}
    out.details["authentication"] = dict(state)
    if unknown:
        # Checks stopped by this machine's shortage say so, and so does this one: the fix is here.
        short = any(f.code == "run.resources" for name in unknown if (r := results[name]) for f in r.findings)
        out.add(
            "run.resources" if short else "dns.unavailable",
            Severity.ERROR,
            f"Could not judge readiness for Gmail, Yahoo and Outlook.com, because the {', '.join(unknown)} "
            f"check{'s' if len(unknown) > 1 else ''} could not tell"
            + (" (this machine ran short of resources)." if short else "."),
            fix=RESOURCES_FIX if short else UNAVAILABLE_FIX,
            checks=list(unknown),
        )
        out.details["receivers"] = {r.id: "unknown" for r in RECEIVERS}
        out.summary = "could not judge receiver readiness"
        return out
    records = _records_to_publish(ctx, spf, dkim, dmarc, state)
    published: list[JsonValue] = [*records]
    missing = [k.upper() for k, ok in state.items() if not ok]
    basic = spf_ok or dkim_ok
    verdict = "ready" if not missing else "small senders only" if basic else "not ready"
    verdicts: dict[str, JsonValue] = {receiver.id: verdict for receiver in RECEIVERS}
    if missing:
        # The three receivers' published rules agree on what a domain needs, so one finding names
        # them all; the rule each one states is kept in the evidence.
        names = ", ".join(r.name for r in RECEIVERS[:-1]) + f" and {RECEIVERS[-1].name}"
        out.add(
            "dns.receivers.not_ready",
            Severity.WARN if basic else Severity.FAIL,
            f"{names} would "
            + (
                "accept this domain's mail only below their bulk-sender threshold (5,000 a day)"
                if basic
                else "reject or junk this domain's mail"
            )
            + f", because it lacks {' and '.join(missing)}.",
            fix="Publish: " + "; ".join(f"{r['type']} at {r['name']}: {r['value']}" for r in records),
            receivers=[r.id for r in RECEIVERS],
            rules={r.id: r.rule for r in RECEIVERS},
            missing=list(missing),
            records=published,
        )
    out.details["receivers"] = verdicts
    out.details["not_judged"] = (
        "reverse DNS of the sending IPs, TLS, spam rate and one-click unsubscribe are outside DNS checks"
    )
    if missing:
        out.summary = f"{domain} lacks {', '.join(missing)} for the receivers' sender rules"
    return out


def _records_to_publish(
    ctx: CheckContext, spf: SpfFacts, dkim: DkimFacts, dmarc: DmarcFacts, state: dict[str, bool]
) -> list[dict[str, JsonValue]]:
    domain = ctx.account.domain
    records: list[dict[str, JsonValue]] = []
    if not state["spf"]:
        value = spf.suggested or "fix the SPF record as the SPF check's findings say"
        records.append({"type": "TXT", "name": domain, "value": value})
    if not state["dmarc"]:
        records.append({"type": "TXT", "name": f"_dmarc.{domain}", "value": starter_dmarc(domain)})
    if not state["dkim"]:
        preset = ctx.preset
        setup = preset.dns.dkim_setup if preset is not None and preset.dns.dkim_setup else None
        records.append(
            {
                "type": "DKIM",
                "name": f"<selector>._domainkey.{domain}",
                "value": setup
                or "Turn on DKIM signing at your mail host and publish the public key it gives you.",
            }
        )
    return records
