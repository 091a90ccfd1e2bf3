"""One domain's SPF record: which record, if any (RFC 7208 4.3 to 4.6), and the names and client
addresses SPF accepts.

The one rule for "which record" that the evaluator (:mod:`inboxcheck.dns.spf_eval`) and the DNS
check's audit (checks/dns/spf.py) share; the record itself is read by the one pure parser,
:mod:`inboxcheck.dns.records.spf`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from inboxcheck.dns.client import DnsAnswer, DnsStatus
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.spf import SpfRecord, is_spf_record, parse_spf

__all__ = [
    "MAX_NAME",
    "RecordStatus",
    "Resolve",
    "SpfFetch",
    "client_address",
    "fetch_record",
    "valid_domain",
]

# RFC 7208 7.3: an expanded domain name longer than this loses labels from the left.
MAX_NAME: Final = 253

Resolve = Callable[[str, str], Awaitable[DnsAnswer]]


def valid_domain(name: str) -> bool:
    """RFC 7208 4.3: a multi-label name, no label empty or over 63 octets, 253 octets at most."""
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    return (
        len(labels) >= 2
        and len(name.encode("utf-8", "replace")) <= MAX_NAME
        and all(0 < len(label.encode("utf-8", "replace")) <= 63 for label in labels)
    )


def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client's address as SPF sees it: an IPv4-mapped IPv6 address is its IPv4 address (RFC 7208
    section 5: "IPv4-mapped IPv6 addresses ... MUST be evaluated as IPv4"). Raises ValueError."""
    address = ipaddress.ip_address(ip.strip().strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class RecordStatus(StrEnum):
    """What a domain publishes, as RFC 7208 4.3-4.6 reads it."""

    FOUND = "found"  # one SPF record, valid
    NONE = "none"  # a malformed name, NXDOMAIN, or no TXT record that starts with v=spf1
    MULTIPLE = "multiple"  # more than one SPF record: permerror
    INVALID = "invalid"  # one SPF record with a syntax error: permerror
    UNAVAILABLE = "unavailable"  # the TXT lookup got no usable answer: temperror


@dataclass(frozen=True)
class SpfFetch:
    """One domain's SPF record as evaluation and the DNS check's audit both read it."""

    domain: str
    status: RecordStatus
    reason: str
    answer: DnsAnswer | None = None
    texts: tuple[str, ...] = ()
    record: SpfRecord | None = None
    error: RecordSyntaxError | None = None


async def fetch_record(resolve: Resolve, domain: str) -> SpfFetch:
    """The SPF record of ``domain`` (RFC 7208 4.3 to 4.6): the one rule for "which record, if any"."""
    if not valid_domain(domain):
        return SpfFetch(domain, RecordStatus.NONE, f"{domain!r} is not a valid domain name (RFC 7208 4.3)")
    answer = await resolve(domain, "TXT")
    if answer.status is DnsStatus.NXDOMAIN:
        return SpfFetch(domain, RecordStatus.NONE, f"the domain {domain} does not exist", answer)
    if not answer.definite:
        return SpfFetch(domain, RecordStatus.UNAVAILABLE, f"the TXT lookup of {domain} failed", answer)
    texts = tuple(text for text in answer.texts() if is_spf_record(text))
    if not texts:
        return SpfFetch(domain, RecordStatus.NONE, f"{domain} publishes no SPF record", answer)
    if len(texts) > 1:
        return SpfFetch(
            domain, RecordStatus.MULTIPLE, f"{domain} publishes {len(texts)} SPF records", answer, texts
        )
    try:
        record = parse_spf(texts[0])
    except RecordSyntaxError as exc:
        return SpfFetch(
            domain,
            RecordStatus.INVALID,
            f"the SPF record of {domain} is invalid: {exc.message} (character {exc.position + 1})",
            answer,
            texts,
            error=exc,
        )
    return SpfFetch(
        domain, RecordStatus.FOUND, f"{domain} publishes one valid SPF record", answer, texts, record
    )
