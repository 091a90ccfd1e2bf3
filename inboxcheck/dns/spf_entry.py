"""The public SPF entry: :func:`check_host` and :func:`check_host_sync` (RFC 7208 ``check_host()``).

Each call asks a DNS client of its own (the given nameservers, else the system's), following a CNAME
an authoritative server answered alone, and hands the lookups to the one evaluator,
:mod:`inboxcheck.dns.spf_eval`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final

from inboxcheck._models import ascii_domain
from inboxcheck._options import Nameserver, parse_nameserver
from inboxcheck.dns.client import DnsAnswer, DnsClient, DnsStatus
from inboxcheck.dns.spf_eval import SpfEvaluation, evaluate
from inboxcheck.dns.spf_record import Resolve, client_address

__all__ = ["check_host", "check_host_sync"]

_DEFAULT_TIMEOUT: Final = 5.0


async def check_host(
    ip: str,
    domain: str,
    *,
    sender: str | None = None,
    helo: str | None = None,
    nameservers: Sequence[str | Nameserver] = (),
    timeout: float = _DEFAULT_TIMEOUT,  # noqa: ASYNC109 - each lookup's timeout, not the call's
    receiver: str = "unknown",
) -> SpfEvaluation:
    """Evaluate SPF for a client at ``ip`` sending as ``domain`` (RFC 7208 ``check_host()``).

    ``domain`` is a domain, or a sender address whose domain is taken (``sender`` defaults to it,
    or to ``postmaster@domain``); ``helo`` fills the ``%{h}`` macro. The lookups go to
    ``nameservers`` (``"HOST[:PORT]"`` or :class:`Nameserver`), or to the system's resolver when none
    are given, each with ``timeout`` seconds. Raises ValueError for an ``ip`` that is no IP address;
    every answer about the domain, including a failed lookup, is a result.
    """
    if "@" in domain:
        sender = sender or domain
        domain = domain.rpartition("@")[2]
    with contextlib.suppress(UnicodeError, ValueError):
        domain = ascii_domain(domain)  # an internationalised name as its A-labels (RFC 7208 4.3)
    client_address(ip)  # ValueError before any lookup
    servers = [s if isinstance(s, Nameserver) else parse_nameserver(s) for s in nameservers]
    client = DnsClient(servers, timeout=timeout)
    return await evaluate(_following_cnames(client), ip, domain, sender=sender, helo=helo, receiver=receiver)


def check_host_sync(
    ip: str,
    domain: str,
    *,
    sender: str | None = None,
    helo: str | None = None,
    nameservers: Sequence[str | Nameserver] = (),
    timeout: float = _DEFAULT_TIMEOUT,
    receiver: str = "unknown",
) -> SpfEvaluation:
    """:func:`check_host` for code that has no event loop running; inside one, raises
    :class:`~inboxcheck.InboxcheckError` (before any coroutine is made, so nothing is left unawaited)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        from inboxcheck._errors import InboxcheckError

        raise InboxcheckError(
            "inboxcheck.check_host_sync() was called inside a running event loop, where it cannot run; "
            "use `await inboxcheck.check_host(...)` there instead"
        )
    return asyncio.run(
        check_host(
            ip, domain, sender=sender, helo=helo, nameservers=nameservers, timeout=timeout, receiver=receiver
        )
    )


_MAX_CNAME_HOPS: Final = 8


def _following_cnames(client: DnsClient) -> Resolve:
    """The client's lookups, following a CNAME an authoritative server answered alone (into another
    zone), as a recursive resolver would; a chain that returns to a name passed is a loop."""

    async def resolve(name: str, rdtype: str) -> DnsAnswer:
        answer = await client.query(name, rdtype)
        visited = {name.lower().rstrip("."), *(c.lower() for c in answer.cname_chain)}
        for _ in range(_MAX_CNAME_HOPS):
            if answer.status is not DnsStatus.NODATA or not answer.cname_chain:
                break
            answer = await client.query(answer.cname_chain[-1], rdtype)
            hops = {c.lower() for c in answer.cname_chain}
            if visited & hops:
                return DnsAnswer(
                    name, rdtype, DnsStatus.CNAME_LOOP, error="the CNAME chain leads back to itself"
                )
            visited |= hops
        return answer

    return resolve
