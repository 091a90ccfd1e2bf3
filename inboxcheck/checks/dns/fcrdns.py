"""Forward-confirmed reverse DNS of the SMTP host (``--deliverability``).

Each of the host's addresses should have a PTR record naming a host that resolves back to the same
address (FCrDNS); receivers distrust mail from addresses without one (Gmail requires it of every
sender). It matters for a host that sends mail on to other servers: a provider's submission host
hands mail to the provider's own outbound servers, whose names the provider manages.
"""

from __future__ import annotations

import asyncio
import ipaddress

from pydantic import JsonValue

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.checks.dns.lookups import Lookups, report_shortage

__all__ = ["check_fcrdns"]


async def _confirm(lookups: Lookups, out: Outcome, address: str) -> dict[str, JsonValue]:
    reverse = ipaddress.ip_address(address).reverse_pointer
    ptr = (await lookups.get(reverse, "PTR")).answer
    entry: dict[str, JsonValue] = {"address": address, "ptr_query": reverse}
    purpose = f"whether {address} is forward-confirmed"
    if report_shortage(out, ptr, purpose, address=address):
        return {**entry, "result": "could_not_tell"}
    if not ptr.definite:
        out.add(
            "dns.fcrdns.unavailable",
            Severity.ERROR,
            f"The reverse DNS of {address} could not be looked up ({ptr.describe()}), so inboxcheck "
            "could not tell whether it is forward-confirmed.",
            fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
            address=address,
        )
        return {**entry, "result": "could_not_tell"}
    names = [name.rstrip(".").lower() for name in ptr.records()]
    entry["ptr"] = list[JsonValue](names)
    if not names:
        out.add(
            "dns.fcrdns.no_ptr",
            Severity.WARN,
            f"The SMTP host's address {address} has no reverse DNS (PTR) record: receivers such as Gmail "
            "distrust or refuse mail from addresses without one.",
            fix=f"Ask whoever owns {address} (the hosting or network provider) to set its PTR record to the "
            "host's name, and that name's A record to the address.",
            address=address,
        )
        return {**entry, "result": "no_ptr"}
    rdtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    for name in names:
        forward = (await lookups.get(name, rdtype)).answer
        if report_shortage(out, forward, purpose, address=address, ptr=name):
            return {**entry, "result": "could_not_tell"}
        if not forward.definite:
            out.add(
                "dns.fcrdns.unavailable",
                Severity.ERROR,
                f"The name {name} (the PTR of {address}) could not be looked up ({forward.describe()}), so "
                "inboxcheck could not tell whether it points back.",
                fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
                address=address,
                ptr=name,
            )
            return {**entry, "result": "could_not_tell"}
        if any(ipaddress.ip_address(a) == ipaddress.ip_address(address) for a in forward.records()):
            return {**entry, "result": "confirmed", "name": name}
    out.add(
        "dns.fcrdns.mismatch",
        Severity.WARN,
        f"The reverse DNS of {address} names {', '.join(names)}, which does not resolve back to {address}: "
        "the address is not forward-confirmed, which receivers treat like a missing PTR (a generic "
        "name such as one of a dynamic address pool makes it worse).",
        fix=f"Set the PTR of {address} to the host's own name, and give that name an {rdtype} record "
        f"pointing to {address}.",
        address=address,
        ptr=list[JsonValue](names),
    )
    return {**entry, "result": "mismatch"}


async def check_fcrdns(ctx: CheckContext) -> Outcome:
    """PTR and back for every address of the SMTP host."""
    host = ctx.account.smtp_host.strip("[]").lower().rstrip(".")
    out = Outcome(summary="")
    lookups = Lookups(ctx)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        answers = [lookup.answer for lookup in await lookups.addresses(host)]
        addresses = [a for answer in answers for a in answer.records()]
        if not addresses:
            if all(answer.definite for answer in answers):
                return Outcome.skip(f"{host} has no address (the SMTP login check says more)")
            purpose = f"whether the SMTP host {host} is forward-confirmed"
            if any(report_shortage(out, answer, purpose, host=host) for answer in answers):
                out.summary = f"could not resolve {host}"
                return out
            out.add(
                "dns.fcrdns.unavailable",
                Severity.ERROR,
                f"The SMTP host {host} could not be resolved, so its reverse DNS was not checked.",
                fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
                host=host,
            )
            out.summary = f"could not resolve {host}"
            return out
    results = list(await asyncio.gather(*(_confirm(lookups, out, a) for a in addresses)))
    out.details["host"] = host
    out.details["addresses"] = list[JsonValue](results)
    confirmed = [r for r in results if r["result"] == "confirmed"]
    out.summary = f"{len(confirmed)} of {len(results)} addresses of {host} forward-confirmed"
    return out
