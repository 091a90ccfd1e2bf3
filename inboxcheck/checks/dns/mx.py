"""MX: the domain receives mail, and its MX hosts say which provider hosts it."""

from __future__ import annotations

import asyncio
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import InboxType, Severity
from inboxcheck._presets import Preset
from inboxcheck.checks.dns.lookups import (
    Lookups,
    finish,
    report_unavailable,
)
from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.records.spf import MX_NAMES_LIMIT

# Senders try MX hosts in preference order; no real domain needs more than a handful, and looking up
# thousands of them (a hostile or broken zone) would cost thousands of queries. The first ten are
# checked, the same bound RFC 7208 4.6.4 puts on an SPF "mx" term.
MAX_MX_HOSTS: Final = MX_NAMES_LIMIT

# --------------------------------------------------------------------------------------------------
# MX


async def check_mx(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    lookups = Lookups(ctx)
    out = Outcome(summary=f"{domain} publishes MX records")
    mx = await lookups.get(domain, "MX")
    if not mx.definite:
        report_unavailable(out, lookups, f"where mail for {domain} is delivered")
        out.summary = f"could not look up the MX records of {domain}"
        return finish(out, lookups)
    if mx.answer.status is DnsStatus.NXDOMAIN:
        out.add(
            "dns.mx.missing",
            Severity.FAIL,
            f"The domain {domain} does not exist in DNS, so nobody can reply to {ctx.account.email_address}.",
            fix=f"Check the spelling of the address, or register {domain} and publish the MX records "
            "of its mail host.",
            lookup=mx.evidence(),
        )
        out.summary = f"{domain} does not exist"
        return finish(out, lookups)
    records = _mx_records(mx.answer)
    out.details["mx"] = [{"preference": pref, "host": host} for pref, host in records[:MAX_MX_HOSTS]]
    out.details["mx_count"] = len(records)
    if not records:
        out.add(
            "dns.mx.missing",
            Severity.FAIL,
            f"The domain {domain} has no MX records, so replies and bounces to it have nowhere "
            "reliable to go.",
            fix=f"Publish the MX records your mail provider gives for {domain}.",
            lookup=mx.evidence(),
        )
        out.summary = f"{domain} has no MX records"
        return finish(out, lookups)
    if any(host in ("", ".") for _, host in records):
        # RFC 7505: a single "0 ." record declares that the domain accepts no mail.
        out.add(
            "dns.mx.missing",
            Severity.FAIL,
            f"The domain {domain} publishes a null MX (0 .), which declares that it accepts no mail at all, "
            "so replies to this mailbox will bounce.",
            fix=f"Replace the null MX of {domain} with the MX records of the provider hosting "
            f"{ctx.account.email_address}.",
            lookup=mx.evidence(),
            null_mx=True,
        )
        out.summary = f"{domain} accepts no mail (null MX)"
        return finish(out, lookups)
    hosts = [host for _, host in records[:MAX_MX_HOSTS]]
    if len(records) > MAX_MX_HOSTS:
        out.add(
            "dns.mx.too_many_hosts",
            Severity.WARN,
            f"The domain {domain} publishes {len(records)} MX records; inboxcheck checked the first "
            f"{MAX_MX_HOSTS} by preference and left the other {len(records) - MAX_MX_HOSTS} alone. Senders "
            "try MX hosts in preference order and give up long before the end of such a list.",
            fix=f"Keep the MX records of the servers that really receive mail for {domain} (a provider "
            "needs one to five) and remove the rest.",
            mx_count=len(records),
            checked=list(hosts),
        )
    detected = ctx.presets.by_mx(hosts)
    out.details["provider"] = detected.id if detected else None
    await _check_mx_hosts(ctx, out, lookups, hosts)
    _check_provider(ctx, out, hosts, detected)
    if out.findings:
        out.summary = f"the MX records of {domain} have problems"
    else:
        names = ", ".join(hosts[:3]) + ("…" if len(hosts) > 3 else "")
        provider = f" ({detected.name})" if detected else ""
        out.summary = f"{domain} receives mail at {names}{provider}"
    return finish(out, lookups)


def _mx_records(answer: DnsAnswer) -> list[tuple[int, str]]:
    if answer.rrset is None:
        return []
    records = [
        (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower()) for rdata in answer.rrset
    ]
    return sorted(records)


async def _check_mx_hosts(ctx: CheckContext, out: Outcome, lookups: Lookups, hosts: list[str]) -> None:
    # A provider's own MX hosts (matched by the presets) are the provider's concern: resolving them
    # says nothing about this domain's setup, so only other hosts are looked up.
    own = [host for host in hosts if ctx.presets.by_mx(host) is None]
    if not own:
        return
    answers = await asyncio.gather(*(lookups.get(host, rdtype) for host in own for rdtype in ("A", "AAAA")))
    by_host = {host: answers[2 * i : 2 * i + 2] for i, host in enumerate(own)}
    addresses: dict[str, JsonValue] = {}
    dead: list[str] = []
    unknown = False
    for host, (a, aaaa) in by_host.items():
        addresses[host] = [*a.answer.records(), *aaaa.answer.records()]
        if a.answer.ok or aaaa.answer.ok:
            continue
        if a.definite and aaaa.definite:
            dead.append(host)
        else:
            unknown = True
    out.details["mx_addresses"] = addresses
    if unknown:
        report_unavailable(out, lookups, "whether the MX hosts resolve")
    if dead:
        every = len(dead) == len(hosts)
        out.add(
            "dns.mx.host_unresolved",
            Severity.FAIL if every else Severity.WARN,
            f"The MX host{'s' if len(dead) > 1 else ''} {', '.join(dead)} of {ctx.account.domain} "
            f"{'have' if len(dead) > 1 else 'has'} no address (A or AAAA), so "
            + (
                "no mail can be delivered to the domain."
                if every
                else "mail falls back to the other MX hosts."
            ),
            fix="Point the MX records at hosts that exist, or publish A/AAAA records for them.",
            hosts=list(dead),
            lookups=[lookup.evidence() for host in dead for lookup in by_host[host]],
        )


def _check_provider(ctx: CheckContext, out: Outcome, hosts: list[str], detected: Preset | None) -> None:
    expected = ctx.preset
    if detected is None or expected is None or detected.id == expected.id:
        return
    if detected.id in expected.mx_shared_with:
        return  # one provider, two presets (Zoho personal and organisation share their MX hosts)
    account = ctx.account
    if expected.is_generic and detected.inbox_type is InboxType.CUSTOM_SMTP:
        return  # a custom server for a domain hosted at a small provider: nothing to compare
    if expected.is_generic:
        message = (
            f"Mail for {account.domain} is received by {detected.name} (MX {hosts[0]}), but the account "
            f"is set up as {account.inbox_type.value} with custom hosts."
        )
    else:
        message = (
            f"Mail for {account.domain} is received by {detected.name} (MX {hosts[0]}), but the account "
            f"is set up for {expected.name}; replies will land at {detected.name}, where this account's "
            "IMAP connection will not see them."
        )
    hint = detected.smtp.preferred()
    fix = (
        f"If the mailbox is hosted at {detected.name}, set inbox_type to {detected.inbox_type.value}"
        + (f" and use {hint.host}:{hint.port}" if hint else "")
        + "; if mail is deliberately split between providers, make sure replies reach this mailbox."
    )
    out.add(
        "dns.mx.provider_mismatch",
        Severity.WARN,
        message,
        fix=fix,
        mx=list(hosts),
        mx_provider=detected.id,
        account_provider=expected.id,
        inbox_type=account.inbox_type.value,
    )
