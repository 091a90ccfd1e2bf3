"""The sending domain and the SMTP host's addresses against DNS blocklists (``--deliverability``).

The lists are data (``inboxcheck/blocklists.toml``), chosen with ``--blocklist-zone`` (a list's id,
or ``[ip:|domain:]ZONE`` for any other list). A query is the IPv4 address reversed, or the domain,
under the list's zone: an A answer in 127.0.0.0/8 means listed, NXDOMAIN means not listed. Lists
answer in-band when they refuse a query (Spamhaus: 127.255.255.252/254/255 for a malformed query,
a public resolver, too many queries); such an answer, a timeout or an answer outside 127.0.0.0/8
proves nothing about the address: "could not tell" (``error``), never "listed".
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Final

from pydantic import JsonValue

from inboxcheck._blocklists import Blocklist, known_blocklists, select_blocklists
from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import Severity
from inboxcheck.checks.dns.lookups import Lookups, report_shortage
from inboxcheck.dns.client import DnsStatus

__all__ = ["Blocklist", "check_blocklists", "known_blocklists", "select_blocklists"]

#: Spamhaus's error answers, which several other lists copy.
_ALWAYS_REFUSED: Final = frozenset({"127.255.255.252", "127.255.255.254", "127.255.255.255"})
_REFUSAL_MEANING: Final = {
    "127.255.255.252": "the query was malformed",
    "127.255.255.254": "the list refuses queries that come through a public or open resolver",
    "127.255.255.255": "the list refuses this resolver for sending too many queries",
}


def _query_name(item: str, blocklist: Blocklist) -> str:
    if blocklist.kind == "ip":
        return ".".join(reversed(item.split("."))) + "." + blocklist.zone
    return f"{item}.{blocklist.zone}"


async def _ask(lookups: Lookups, out: Outcome, blocklist: Blocklist, item: str) -> dict[str, JsonValue]:
    name = _query_name(item, blocklist)
    answer = (await lookups.get(name, "A")).answer
    where: dict[str, JsonValue] = {
        "list": blocklist.name,
        "zone": blocklist.zone,
        "checked": item,
        "query": name,
    }
    if answer.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
        return {**where, "result": "not_listed"}
    if report_shortage(out, answer, f"whether {item} is listed on {blocklist.name}", **where):
        return {**where, "result": "could_not_tell"}
    if not answer.ok:
        out.add(
            "dns.blocklist.unavailable",
            Severity.ERROR,
            f"{blocklist.name} did not answer for {item} ({answer.describe()}), so inboxcheck could not "
            "tell whether it is listed.",
            fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
            **where,
        )
        return {**where, "result": "could_not_tell"}
    codes = answer.records()
    refused = [c for c in codes if c in blocklist.refused or c in _ALWAYS_REFUSED]
    outside = [c for c in codes if not _in_loopback(c)]
    if refused or outside:
        meaning = (
            _REFUSAL_MEANING.get(refused[0], "the list refuses this query")
            if refused
            else (
                "the answer is outside 127.0.0.0/8, which no list uses for a listing (the zone may be "
                "gone and its domain parked)"
            )
        )
        out.add(
            "dns.blocklist.refused",
            Severity.ERROR,
            f"{blocklist.name} answered {', '.join(codes)} for {item}: {meaning}, so inboxcheck could "
            "not tell whether it is listed.",
            fix="Ask through a resolver of your own (not a public one such as 8.8.8.8 or 1.1.1.1) with "
            "--nameserver, or check the address on the list's web page"
            + (f" ({blocklist.delist})." if blocklist.delist else "."),
            answers=list[JsonValue](codes),
            **where,
        )
        return {**where, "result": "could_not_tell", "answers": list[JsonValue](codes)}
    reason = ""
    txt = (await lookups.get(name, "TXT")).answer
    if txt.ok:
        reason = "; ".join(txt.texts())[:300]
    what = "address" if blocklist.kind == "ip" else "domain"
    out.add(
        "dns.blocklist.listed",
        Severity.FAIL,
        f"The {what} {item} is listed on {blocklist.name} (answer {', '.join(codes)})"
        + (f": {reason}" if reason else "")
        + ". Receivers that use this list refuse or junk its mail.",
        fix=(
            f"Request delisting at {blocklist.delist} "
            if blocklist.delist
            else "Request delisting from the list's operator "
        )
        + "once the cause (a compromised account, a spam run, a dynamic address) is fixed; if the "
        "address is the provider's, tell the provider.",
        answers=list[JsonValue](codes),
        reason=reason,
        delist=blocklist.delist,
        **where,
    )
    return {**where, "result": "listed", "answers": list[JsonValue](codes)}


def _in_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


async def check_blocklists(ctx: CheckContext) -> Outcome:
    """Ask each selected list about the sending domain and the SMTP host's IPv4 addresses."""
    out = Outcome(summary="")
    lookups = Lookups(ctx)
    lists = select_blocklists(ctx.options.blocklist_zones)
    domain = ctx.account.email_address.rpartition("@")[2].lower()
    host = ctx.account.smtp_host.strip("[]").lower().rstrip(".")
    addresses: list[str] = []
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        # An address is no name to resolve; the IP lists asked here are IPv4 lists.
        addresses = [str(literal)] if literal.version == 4 else []
    else:
        answer = (await lookups.get(host, "A")).answer
        if answer.ok:
            addresses = answer.records()
        elif not answer.definite and not report_shortage(
            out, answer, f"whether the SMTP host {host} is on the IP lists", host=host
        ):
            out.add(
                "dns.blocklist.unavailable",
                Severity.ERROR,
                f"The SMTP host {host} could not be resolved ({answer.describe()}), so its addresses "
                "were not checked against the IP lists.",
                fix="Check the DNS servers this machine (or --nameserver) uses, then try again.",
                host=host,
            )
    asks = [
        _ask(lookups, out, blocklist, item)
        for blocklist in lists
        for item in (addresses if blocklist.kind == "ip" else [domain])
    ]
    checked = list(await asyncio.gather(*asks))
    out.details["lists"] = [b.id for b in lists]
    out.details["checked"] = list[JsonValue](checked)
    listed = [c for c in checked if c["result"] == "listed"]
    unsure = [c for c in checked if c["result"] == "could_not_tell"]
    answered = len(checked) - len(unsure)
    # A lookup that was not answered says nothing about a listing: "not listed" only for answers.
    if listed:
        out.summary = f"listed on {len(listed)} of {len(checked)} lookups"
    elif not answered:
        out.summary = f"could not tell: none of the {len(checked)} lookups was answered"
    elif unsure:
        out.summary = f"not listed on the {answered} lookups answered; could not tell for {len(unsure)}"
    else:
        out.summary = f"not listed ({answered} of {len(checked)} lookups answered)"
    return out
