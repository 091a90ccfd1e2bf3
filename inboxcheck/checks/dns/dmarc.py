"""DMARC (RFC 7489): the policy at the domain or its organisational domain, and report destinations."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.checks.dns.lookups import Lookups, finish, report_unavailable
from inboxcheck.checks.dns.treewalk import discover_policy, organisational_domain, same_organisation
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.dmarc import DmarcRecord, Policy, is_dmarc_record, parse_dmarc

# --------------------------------------------------------------------------------------------------
# DMARC

MAX_REPORT_DESTINATIONS: Final = 10


@dataclass
class DmarcFacts:
    record: DmarcRecord | None = None
    domain: str | None = None
    inherited: bool = False
    unknown: bool = False


async def check_dmarc(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    lookups = Lookups(ctx)
    facts = DmarcFacts()
    ctx.facts["dns.dmarc"] = facts
    out = Outcome(summary=f"{domain} publishes a DMARC policy")
    walk = await discover_policy(lookups, domain)
    if walk.unknown is not None:
        facts.unknown = True
        report_unavailable(out, lookups, f"whether {domain} publishes DMARC")
        out.summary = f"could not look up the DMARC record of {domain}"
        return finish(out, lookups)
    if walk.found is None:
        out.add(
            "dns.dmarc.missing",
            Severity.FAIL,
            f"The domain {domain} publishes no DMARC record (looked at {', '.join(walk.looked_at)}), "
            "which Gmail, Yahoo and Outlook.com require of bulk senders.",
            fix=f"Publish a TXT record at _dmarc.{domain}: {starter_dmarc(domain)}",
            looked_at=list(walk.looked_at),
        )
        out.summary = f"{domain} has no DMARC record"
        return finish(out, lookups)
    where, texts, lookup = walk.found.domain, list(walk.found.texts), walk.found.lookup
    facts.domain = where
    facts.inherited = where != domain
    out.details.update(found_at=f"_dmarc.{where}", inherited=facts.inherited)
    if len(texts) > 1:
        out.add(
            "dns.dmarc.multiple",
            Severity.FAIL,
            f"The name _dmarc.{where} has {len(texts)} DMARC records, so receivers apply no DMARC "
            "policy at all.",
            fix=f"Keep one record at _dmarc.{where}, merging what you need from the others.",
            records=list(texts),
            lookup=lookup.evidence(),
        )
        out.summary = f"{where} has several DMARC records"
        return finish(out, lookups)
    text = texts[0]
    out.details["record"] = text
    try:
        record = parse_dmarc(text)
    except RecordSyntaxError as exc:
        out.add(
            "dns.dmarc.syntax",
            Severity.FAIL,
            f"The DMARC record at _dmarc.{where} is invalid: {exc.message} (character {exc.position + 1}), "
            "so receivers ignore it.",
            fix=f"Correct the record at the marked position, or replace it with: {starter_dmarc(where)}",
            record=text,
            position=exc.position,
            pointer=exc.pointer(),
        )
        out.summary = f"the DMARC record of {where} is invalid"
        return finish(out, lookups)
    facts.record = record
    policy = record.subdomain_policy if facts.inherited else record.policy
    out.details.update(
        policy=record.policy.value,
        subdomain_policy=record.subdomain_policy.value,
        effective_policy=policy.value,
        alignment={
            "dkim": f"{record.adkim.label} (adkim={record.adkim.value})",
            "spf": f"{record.aspf.label} (aspf={record.aspf.value})",
        },
        rua=[uri.uri for uri in record.rua],
        ruf=[uri.uri for uri in record.ruf],
        testing=record.testing,
        pct=record.pct,
    )
    if record.notes:
        out.details["notes"] = list(record.notes)
    if policy is Policy.NONE:
        out.add(
            "dns.dmarc.policy_none",
            Severity.WARN,
            f"The DMARC policy for {domain} is p=none: fine to start with and enough for the receivers' "
            "sender rules, but it protects the domain from nobody.",
            fix="Once the aggregate reports show all your mail passing, change p=none to "
            f"p=quarantine at _dmarc.{where}.",
            record=text,
            policy=policy.value,
        )
    await _check_report_destinations(ctx, out, lookups, where, record)
    if not out.findings:
        out.summary = f"{domain} has DMARC p={policy.value}"
    else:
        out.summary = f"{domain} has DMARC p={policy.value}, with remarks"
    return finish(out, lookups)


async def _check_report_destinations(
    ctx: CheckContext, out: Outcome, lookups: Lookups, where: str, record: DmarcRecord
) -> None:
    # RFC 7489 7.1: a report address outside the policy's organisational domain must agree to
    # receive the reports with a record at <policy-domain>._report._dmarc.<destination>.
    destinations = sorted(
        {uri.domain.lower().rstrip(".") for uri in (*record.rua, *record.ruf) if uri.domain}
    )
    if not destinations:
        return
    if len(destinations) > MAX_REPORT_DESTINATIONS:
        # Each destination costs a tree walk and an authorisation lookup; receivers send to a few.
        skipped: list[JsonValue] = [*destinations[MAX_REPORT_DESTINATIONS:]]
        out.details["report_destinations_not_checked"] = skipped
        destinations = destinations[:MAX_REPORT_DESTINATIONS]
    orgs = await asyncio.gather(*(organisational_domain(lookups, d) for d in [where, *destinations]))
    if None in orgs:
        report_unavailable(
            out, lookups, "whether the DMARC report addresses are in the policy's organisation"
        )
        return
    external = [
        dest for dest, org in zip(destinations, orgs[1:], strict=True) if not same_organisation(org, orgs[0])
    ]
    if not external:
        return
    answers = await asyncio.gather(
        *(lookups.get(f"{where}._report._dmarc.{dest}", "TXT") for dest in external)
    )
    unauthorised = []
    for dest, lookup in zip(external, answers, strict=True):
        if not lookup.definite:
            continue
        if not any(is_dmarc_record(text) for text in lookup.answer.texts()):
            unauthorised.append((dest, lookup))
    report_unavailable(out, lookups, "whether the DMARC report addresses accept reports")
    for dest, lookup in unauthorised:
        out.add(
            "dns.dmarc.rua_unauthorised",
            Severity.WARN,
            f"The DMARC record of {where} sends reports to {dest}, which has not authorised them "
            f"(no record at {where}._report._dmarc.{dest}), so receivers will not send the reports.",
            fix=f'Ask the operator of {dest} to publish "v=DMARC1" at {where}._report._dmarc.{dest}, '
            "or send reports to an address in your own domain.",
            destination=dest,
            lookup=lookup.evidence(),
        )


def starter_dmarc(domain: str) -> str:
    return f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r"
