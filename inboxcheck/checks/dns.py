"""DNS checks of the sending domain: MX, SPF, DKIM, DMARC, and readiness for the big receivers.

Every lookup goes through the run's :class:`~inboxcheck._dnsclient.DnsClient`, so a name asked by two
checks costs one query, and independent lookups run together (``asyncio.gather``): a domain costs
about its slowest chain of lookups, not their sum.

A lookup that times out, or is answered SERVFAIL or REFUSED, proves nothing about the domain: it is
reported as ``dns.unavailable`` (severity ``error``, "could not tell") and never as a missing record.
NXDOMAIN and NODATA are real answers.

Records are parsed by the pure parsers of :mod:`inboxcheck._records`; this module only fetches,
follows (includes, redirects, CNAMEs) and judges.

Choices worth knowing:

- The organisational domain for DMARC is the last two labels (no public suffix list dependency).
- MX hosts that match a provider preset (aspmx.l.google.com, *.mail.protection.outlook.com) are not
  resolved: they are the provider's, and say nothing about this domain's setup.
- DKIM selectors are guessed from a short list only when ``_domainkey.<domain>`` is not NXDOMAIN
  (RFC 8020: nothing exists below a name that does not exist); the preset's selectors and those
  given with ``--dkim-selector`` are always asked.
- SPF lookups are counted statically, as RFC 7208 4.6.4 counts them, over the whole include tree;
  terms with macros are counted but not followed (they need the sender's address).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._dnsclient import DnsAnswer, DnsStatus
from inboxcheck._models import InboxType, Severity, Status
from inboxcheck._options import Family
from inboxcheck._presets import Preset
from inboxcheck._records._common import RecordSyntaxError
from inboxcheck._records.dkim import DkimKey, KeyType, is_dkim_record, parse_dkim
from inboxcheck._records.dmarc import DmarcRecord, Policy, is_dmarc_record, parse_dmarc
from inboxcheck._records.spf import (
    LOOKUP_LIMIT,
    MX_NAMES_LIMIT,
    VOID_LOOKUP_LIMIT,
    Mechanism,
    MechanismKind,
    Modifier,
    Qualifier,
    SpfRecord,
    is_spf_record,
    parse_spf,
)

__all__ = ["CHECKS", "COMMON_DKIM_SELECTORS", "merged_spf_record", "organisational_domain"]

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
_MAX_CNAME_HOPS: Final = 8
# Following include/redirect: deeper than this is certainly over the lookup limit, and the bound
# keeps a hostile tree (a thousand includes) from costing a thousand queries.
_MAX_SPF_DEPTH: Final = 10
_MAX_SPF_RECORDS: Final = 60
_UNAVAILABLE_FIX: Final = (
    "Check that the DNS server is reachable and answering (or pass a working one with --nameserver), "
    "then run again; a lookup that failed says nothing about the domain's records."
)


def organisational_domain(domain: str) -> str:
    """The registered domain, taken as the last two labels.

    A simplification of RFC 7489 3.2 (which uses the public suffix list): inboxcheck has no PSL
    dependency, and for multi-label suffixes such as ``co.uk`` this returns the suffix itself, whose
    ``_dmarc`` lookup then simply finds nothing. The exact domain is always tried first.
    """
    labels = domain.rstrip(".").lower().split(".")
    return ".".join(labels[-2:])


# --------------------------------------------------------------------------------------------------
# Lookups


@dataclass(frozen=True)
class Lookup:
    """A lookup with the CNAMEs followed to reach its answer."""

    name: str
    rdtype: str
    answer: DnsAnswer
    chain: tuple[str, ...] = ()

    @property
    def definite(self) -> bool:
        return self.answer.definite

    def evidence(self) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = {
            "name": self.name,
            "type": self.rdtype,
            "status": self.answer.status.value,
            "duration_ms": self.answer.duration_ms,
        }
        if self.chain:
            data["cname_chain"] = list(self.chain)
        if self.answer.ok:
            data["records"] = list(self.answer.records())
        if self.answer.error:
            data["error"] = self.answer.error
        return data

    def describe(self) -> str:
        via = f" (via CNAME {' -> '.join(self.chain)})" if self.chain else ""
        return f"{self.name} {self.rdtype}{via}: " + (
            "; ".join(self.answer.records()) if self.answer.ok else self._status_text()
        )

    def _status_text(self) -> str:
        status = self.answer.status
        if status is DnsStatus.NXDOMAIN:
            return "the name does not exist (NXDOMAIN)"
        if status is DnsStatus.NODATA:
            return "no record of this type (NODATA)"
        return f"{status.value}" + (f" ({self.answer.error})" if self.answer.error else "")


class Lookups:
    """One check's view of the shared DNS client: follows CNAMEs and remembers what it asked."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.seen: list[Lookup] = []

    async def get(self, name: str, rdtype: str) -> Lookup:
        answer = await self.ctx.dns.query(name, rdtype)
        chain: list[str] = list(answer.cname_chain)
        # An authoritative server does not chase a CNAME into another zone: it answers the CNAME
        # alone, which looks like NODATA. Follow it, as a recursive resolver would.
        for _ in range(_MAX_CNAME_HOPS):
            if answer.status is not DnsStatus.NODATA or not answer.cname_chain:
                break
            answer = await self.ctx.dns.query(answer.cname_chain[-1], rdtype)
            chain.extend(answer.cname_chain)
        lookup = Lookup(name, rdtype, answer, tuple(chain))
        self.seen.append(lookup)
        return lookup

    def timings(self) -> list[JsonValue]:
        """Each lookup with its outcome and time, for the check's details."""
        unique: dict[tuple[str, str], Lookup] = {}
        for lookup in self.seen:
            unique.setdefault((lookup.name.lower(), lookup.rdtype), lookup)
        return [
            {
                "name": lookup.name,
                "type": lookup.rdtype,
                "status": lookup.answer.status.value,
                "ms": lookup.answer.duration_ms,
            }
            for lookup in unique.values()
        ]

    def unavailable(self) -> list[Lookup]:
        unique: dict[tuple[str, str], Lookup] = {}
        for lookup in self.seen:
            if not lookup.definite:
                unique.setdefault((lookup.name.lower(), lookup.rdtype), lookup)
        return list(unique.values())


def _report_unavailable(out: Outcome, lookups: Lookups, purpose: str) -> bool:
    """One ``dns.unavailable`` finding for every lookup that could not be answered; True if any."""
    failed = lookups.unavailable()
    if not failed:
        return False
    first = failed[0]
    others = f" and {len(failed) - 1} more lookup(s)" if len(failed) > 1 else ""
    out.add(
        "dns.unavailable",
        Severity.ERROR,
        f"Could not tell {purpose}: the lookup of {first.name} {first.rdtype}{others} got no usable "
        f"answer ({first.answer.status.value}), which says nothing about whether the record exists.",
        fix=_UNAVAILABLE_FIX,
        lookups=[lookup.evidence() for lookup in failed],
    )
    return True


def _finish(out: Outcome, lookups: Lookups) -> Outcome:
    out.details["lookups"] = lookups.timings()
    return out


def _spf_texts(lookup: Lookup) -> list[str]:
    return [text for text in lookup.answer.texts() if is_spf_record(text)]


# --------------------------------------------------------------------------------------------------
# MX


async def check_mx(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    lookups = Lookups(ctx)
    out = Outcome(summary=f"{domain} publishes MX records")
    mx = await lookups.get(domain, "MX")
    if not mx.definite:
        _report_unavailable(out, lookups, f"where mail for {domain} is delivered")
        out.summary = f"could not look up the MX records of {domain}"
        return _finish(out, lookups)
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
        return _finish(out, lookups)
    records = _mx_records(mx.answer)
    out.details["mx"] = [{"preference": pref, "host": host} for pref, host in records]
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
        return _finish(out, lookups)
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
        return _finish(out, lookups)
    hosts = [host for _, host in records]
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
    return _finish(out, lookups)


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
    own = [host for host in hosts if ctx.presets.by_mx([host]) is None]
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
        _report_unavailable(out, lookups, "whether the MX hosts resolve")
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


# --------------------------------------------------------------------------------------------------
# SPF


@dataclass
class SpfFacts:
    """What the SPF check learnt, for the receiver-readiness check."""

    record: str | None = None
    records: list[str] = field(default_factory=list)
    parsed: SpfRecord | None = None
    lookups: int = 0
    includes: set[str] = field(default_factory=set)
    missing_includes: list[str] = field(default_factory=list)
    suggested: str | None = None  # a record that fixes what was found, when one can be written
    valid: bool = False
    unknown: bool = False


@dataclass
class _TermCost:
    domain: str
    term: str
    cost: int
    children: list[_TermCost] = field(default_factory=list)

    def as_json(self) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = {"domain": self.domain, "term": self.term, "cost": self.cost}
        if self.children:
            data["terms"] = [child.as_json() for child in self.children]
        return data


@dataclass
class _Problem:
    code: str
    severity: Severity
    message: str
    fix: str
    evidence: dict[str, JsonValue]


class _SpfWalk:
    """Follows include and redirect, counting lookups the way RFC 7208 4.6.4 counts them.

    Every term that needs DNS (include, a, mx, ptr, exists, redirect) costs one lookup, plus whatever
    the record it leads to costs. Independent terms are fetched concurrently. A domain already on the
    current include path is a loop and is not followed again.
    """

    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups
        self.problems: list[_Problem] = []
        self.void: list[dict[str, JsonValue]] = []
        self.includes: set[str] = set()
        self.records: dict[str, SpfRecord] = {}
        self.ptr: list[dict[str, JsonValue]] = []
        self.visited = 0
        self.truncated = False

    def problem(self, code: str, severity: Severity, message: str, fix: str, **evidence: JsonValue) -> None:
        key = (code, str(sorted(evidence.items())))
        if any((p.code, str(sorted(p.evidence.items()))) == key for p in self.problems):
            return
        self.problems.append(_Problem(code, severity, message, fix, evidence))

    async def cost_of(self, domain: str, record: SpfRecord, path: tuple[str, ...]) -> list[_TermCost]:
        self.records.setdefault(domain, record)
        terms = record.lookup_terms()
        return list(await asyncio.gather(*(self._term(domain, term, path) for term in terms)))

    async def _term(self, domain: str, term: Mechanism | Modifier, path: tuple[str, ...]) -> _TermCost:
        node = _TermCost(domain, term.text, 1)
        if isinstance(term, Modifier) or term.kind is MechanismKind.INCLUDE:
            target = term.value if isinstance(term, Modifier) else term.domain
            assert target is not None
            await self._follow(node, domain, term, target.rstrip(".").lower(), path)
        elif term.kind is MechanismKind.PTR:
            self.ptr.append({"domain": domain, "term": term.text})
        elif term.has_macro:
            pass  # needs the sender's address to expand: counted, not looked up
        elif term.kind in (MechanismKind.A, MechanismKind.EXISTS):
            target = (term.domain or domain).rstrip(".").lower()
            rdtypes = ("A",) if term.kind is MechanismKind.EXISTS else ("A", "AAAA")
            answers = await asyncio.gather(*(self.lookups.get(target, rdtype) for rdtype in rdtypes))
            if all(a.definite and not a.answer.ok for a in answers):
                self.void.append({"domain": domain, "term": term.text, "lookup": answers[0].describe()})
        elif term.kind is MechanismKind.MX:
            target = (term.domain or domain).rstrip(".").lower()
            mx = await self.lookups.get(target, "MX")
            if mx.definite and not mx.answer.ok:
                self.void.append({"domain": domain, "term": term.text, "lookup": mx.describe()})
            names = len(mx.answer.records())
            if names > MX_NAMES_LIMIT:
                self.problem(
                    "dns.spf.too_many_lookups",
                    Severity.FAIL,
                    f"The term {term.text} in the SPF record of {domain} points at {names} MX hosts; "
                    f"RFC 7208 allows at most {MX_NAMES_LIMIT}, so receivers return a permanent error.",
                    f"Replace {term.text} with ip4:/ip6: ranges of the servers that actually send mail.",
                    domain=domain,
                    term=term.text,
                    mx_hosts=names,
                )
        return node

    async def _follow(
        self, node: _TermCost, domain: str, term: Mechanism | Modifier, target: str, path: tuple[str, ...]
    ) -> None:
        kind = "redirect" if isinstance(term, Modifier) else "include"
        self.includes.add(target)
        if "%" in target:
            return
        if target in path:
            cycle = [*path[path.index(target) :], target]
            self.problem(
                "dns.spf.loop",
                Severity.FAIL,
                f"The SPF record of {domain} {kind}s {target}, which is already being evaluated "
                f"({' -> '.join(cycle)}): the records form a loop, a permanent error for receivers.",
                f"Remove {term.text} from the SPF record of {domain}, or break the loop elsewhere "
                "in the chain.",
                domain=domain,
                term=term.text,
                cycle=list(cycle),
            )
            return
        if len(path) >= _MAX_SPF_DEPTH or self.visited >= _MAX_SPF_RECORDS:
            self.truncated = True
            return
        self.visited += 1
        lookup = await self.lookups.get(target, "TXT")
        if not lookup.definite:
            return
        texts = _spf_texts(lookup)
        if not texts:
            if not lookup.answer.ok:
                self.void.append({"domain": domain, "term": term.text, "lookup": lookup.describe()})
            self.problem(
                "dns.spf.include_missing",
                Severity.FAIL,
                f"The SPF record of {domain} {kind}s {target}, which has no SPF record, so receivers "
                "return a permanent error for every message.",
                f"Fix or remove {term.text}: check the spelling against your provider's instructions.",
                domain=domain,
                term=term.text,
                target=target,
                lookup=lookup.evidence(),
            )
            return
        if len(texts) > 1:
            self.problem(
                "dns.spf.multiple",
                Severity.FAIL,
                f"The domain {target}, {kind}d by the SPF record of {domain}, has {len(texts)} SPF records, "
                "a permanent error for receivers.",
                f"Ask the owner of {target} to publish a single SPF record, or remove {term.text}.",
                domain=target,
                records=list(texts),
            )
            return
        try:
            record = parse_spf(texts[0])
        except RecordSyntaxError as exc:
            self.problem(
                "dns.spf.syntax",
                Severity.FAIL,
                f"The SPF record of {target}, {kind}d by {domain}, is invalid: {exc.message} "
                f"(character {exc.position + 1}).",
                f"Fix the record of {target}, or remove {term.text}.",
                domain=target,
                record=texts[0],
                position=exc.position,
                pointer=exc.pointer(),
            )
            return
        node.children = await self.cost_of(target, record, (*path, target))
        node.cost += sum(child.cost for child in node.children)

    def final_all(self, domain: str) -> tuple[Mechanism | None, str]:
        """The ``all`` that ends evaluation, following redirects; and the domain holding it."""
        seen: set[str] = set()
        current = domain
        while current not in seen:
            seen.add(current)
            record = self.records.get(current)
            if record is None:
                return None, current
            if record.all is not None:
                return record.all, current
            redirect = record.effective_redirect
            if redirect is None:
                return None, current
            current = redirect.value.rstrip(".").lower()
        return None, current


async def check_spf(ctx: CheckContext) -> Outcome:
    domain = ctx.account.domain
    lookups = Lookups(ctx)
    facts = SpfFacts()
    ctx.facts["dns.spf"] = facts
    out = Outcome(summary=f"{domain} has one valid SPF record")
    txt = await lookups.get(domain, "TXT")
    if not txt.definite:
        facts.unknown = True
        _report_unavailable(out, lookups, f"whether {domain} publishes SPF")
        out.summary = f"could not look up the SPF record of {domain}"
        return _finish(out, lookups)
    texts = _spf_texts(txt)
    facts.records = texts
    if not texts:
        out.add(
            "dns.spf.missing",
            Severity.FAIL,
            f"The domain {domain} publishes no SPF record, so receivers cannot tell which servers "
            "may send its mail.",
            fix=f"Publish a TXT record at {domain}: {_suggest(facts, None, ctx)}",
            lookup=txt.evidence(),
        )
        out.summary = f"{domain} has no SPF record"
        return _finish(out, lookups)
    if len(texts) > 1:
        out.add(
            "dns.spf.multiple",
            Severity.FAIL,
            f"The domain {domain} publishes {len(texts)} SPF records; RFC 7208 allows one, so "
            "receivers return a "
            "permanent error and SPF fails for every message.",
            fix=f"Merge them into one TXT record at {domain}: {_suggest(facts, texts, ctx)}",
            records=list(texts),
            lookup=txt.evidence(),
        )
        out.summary = f"{domain} has {len(texts)} SPF records"
        return _finish(out, lookups)
    text = texts[0]
    facts.record = text
    out.details["record"] = text
    _check_string_lengths(out, txt.name, _strings_of(txt, text), text)
    try:
        record = parse_spf(text)
    except RecordSyntaxError as exc:
        strings = _strings_of(txt, text)
        hint = ""
        if len(strings) > 1:
            hint = (
                f" The record is published as {len(strings)} strings, which are joined without spaces: "
                "make sure each string but the last ends with a space."
            )
        out.add(
            "dns.spf.syntax",
            Severity.FAIL,
            f"The SPF record of {domain} is invalid: {exc.message} (character {exc.position + 1}).",
            fix=f"Correct the record at the marked position.{hint}",
            record=text,
            position=exc.position,
            pointer=exc.pointer(),
            strings=[s.decode("utf-8", "replace") for s in strings],
        )
        out.summary = f"the SPF record of {domain} is invalid"
        return _finish(out, lookups)
    facts.parsed = record
    walk = _SpfWalk(lookups)
    costs = await walk.cost_of(domain, record, (domain,))
    total = sum(item.cost for item in costs)
    facts.lookups = total
    facts.includes = walk.includes
    out.details.update(
        lookup_count=total,
        lookup_limit=LOOKUP_LIMIT,
        headroom=LOOKUP_LIMIT - total,
        terms=[item.as_json() for item in costs],
        void_lookups=len(walk.void),
    )
    if walk.truncated:
        out.details["truncated"] = True
    if _report_unavailable(out, lookups, f"how many lookups the SPF record of {domain} needs"):
        facts.unknown = True
    for problem in walk.problems:
        out.add(problem.code, problem.severity, problem.message, fix=problem.fix, **problem.evidence)
    if total > LOOKUP_LIMIT:
        expensive = sorted(costs, key=lambda item: item.cost, reverse=True)
        out.add(
            "dns.spf.too_many_lookups",
            Severity.FAIL,
            f"The SPF record of {domain} needs {total} DNS lookups, over the limit of {LOOKUP_LIMIT} "
            "(RFC 7208 4.6.4), so receivers return a permanent error and SPF fails.",
            fix="Remove includes of services you no longer use, or replace the costliest ones ("
            + ", ".join(f"{item.term} costs {item.cost}" for item in expensive[:3])
            + ") with the ip4:/ip6: ranges they stand for.",
            lookup_count=total,
            lookup_limit=LOOKUP_LIMIT,
            terms=[item.as_json() for item in costs],
        )
    if len(walk.void) > VOID_LOOKUP_LIMIT:
        out.add(
            "dns.spf.void_lookups",
            Severity.FAIL,
            f"The SPF record of {domain} makes {len(walk.void)} lookups that find nothing; more than "
            f"{VOID_LOOKUP_LIMIT} is a permanent error at receivers (RFC 7208 4.6.4).",
            fix="Remove the terms that point at names without records: "
            + ", ".join(str(item["term"]) for item in walk.void)
            + ".",
            void_lookups=list(walk.void),
        )
    if walk.ptr:
        out.add(
            "dns.spf.ptr",
            Severity.WARN,
            f"The SPF record of {domain} (or a record it includes) uses the ptr mechanism, which RFC 7208 "
            "says not to use: it is slow, unreliable, and some receivers ignore or reject it.",
            fix="Replace ptr with ip4:/ip6: ranges or a: names of the sending servers.",
            terms=list(walk.ptr),
        )
    _check_permissive(out, walk, domain, record, facts, ctx)
    _check_provider_include(ctx, out, walk, facts, record)
    facts.valid = not any(f.severity in (Severity.FAIL, Severity.ERROR) for f in out.findings)
    if not out.findings:
        out.summary = f"{domain} has a valid SPF record using {total} of {LOOKUP_LIMIT} lookups"
    elif facts.unknown and facts.valid:
        out.summary = f"could not evaluate the whole SPF record of {domain}"
    else:
        out.summary = f"the SPF record of {domain} has problems ({total} of {LOOKUP_LIMIT} lookups)"
    return _finish(out, lookups)


def _strings_of(txt: Lookup, text: str) -> tuple[bytes, ...]:
    for strings in txt.answer.text_strings():
        if b"".join(strings).decode("utf-8", "replace") == text:
            return strings
    return ()


def _check_string_lengths(out: Outcome, name: str, strings: Sequence[bytes], text: str) -> None:
    """RFC 7208 3.3: each string of a TXT record holds at most 255 characters.

    A DNS message cannot carry a longer string (RFC 1035 3.3: a one-byte length), so through a
    conforming resolver this never fires; it guards answers from other sources, such as a zone file
    or a client that joined the strings itself, where a long string means the provider's UI did
    not split the record and receivers will see it cut or not at all.
    """
    long = [len(s) for s in strings if len(s) > 255]
    if long:
        out.add(
            "dns.spf.string_too_long",
            Severity.FAIL,
            f"The SPF record of {name} contains a string of {long[0]} characters; DNS strings are "
            "limited to 255, so the record is likely to be cut or rejected.",
            fix="Publish the record as several quoted strings of at most 255 characters each, which "
            "receivers join back together.",
            lengths=[*long],
            record=text,
        )


def _check_permissive(
    out: Outcome, walk: _SpfWalk, domain: str, record: SpfRecord, facts: SpfFacts, ctx: CheckContext
) -> None:
    final, where = walk.final_all(domain)
    via = f" (through the redirect to {where})" if where != domain else ""

    def better() -> str:
        if where != domain:
            return ""
        return f" The record would then read: {_suggest(facts, [record.text], ctx)}"

    if final is None:
        if record.effective_redirect is not None and where not in walk.records:
            return  # the redirect target is broken or could not be read: reported already
        out.add(
            "dns.spf.permissive",
            Severity.WARN,
            f"The SPF record of {domain}{via} does not end in an 'all' mechanism, so mail from any other "
            "server gets a neutral result instead of failing SPF.",
            fix=f"End the record with ~all (or -all once you are sure every sender is listed).{better()}",
            record=record.text,
        )
    elif final.qualifier in (Qualifier.PASS, Qualifier.NEUTRAL):
        strict = final.qualifier is Qualifier.PASS
        out.add(
            "dns.spf.permissive",
            Severity.FAIL if strict else Severity.WARN,
            f"The SPF record of {domain}{via} ends in {final.text}, which "
            + (
                "lets every server on the internet pass SPF as this domain."
                if strict
                else "tells receivers to treat mail from any server as neutral."
            )
            + "",
            fix=f"Replace {final.text} with ~all (or -all once you are sure every sender is "
            f"listed).{better()}",
            record=walk.records[where].text,
            all=final.text,
        )


def _provider_includes(ctx: CheckContext) -> list[str]:
    preset = ctx.preset
    if preset is None or preset.is_generic:
        return []
    return list(preset.dns.spf_includes)


def _check_provider_include(
    ctx: CheckContext, out: Outcome, walk: _SpfWalk, facts: SpfFacts, record: SpfRecord
) -> None:
    preset = ctx.preset
    wanted = _provider_includes(ctx)
    missing = [name for name in wanted if name.lower() not in walk.includes]
    facts.missing_includes = missing
    if not missing or preset is None:
        return
    domain = ctx.account.domain
    out.add(
        "dns.spf.provider_not_included",
        Severity.FAIL,
        f"The SPF record of {domain} does not include {', '.join(missing)}, so mail sent through "
        f"{preset.name} fails SPF.",
        fix=f"Replace the TXT record at {domain} with: {_suggest(facts, [record.text], ctx)}",
        record=record.text,
        expected_includes=[*wanted],
        provider=preset.id,
    )


def _suggest(facts: SpfFacts, current: Sequence[str] | None, ctx: CheckContext) -> str:
    facts.suggested = merged_spf_record(current, _provider_includes(ctx), sending_host=ctx.account.smtp_host)
    return facts.suggested


def merged_spf_record(current: Sequence[str] | None, includes: Iterable[str], *, sending_host: str) -> str:
    """One SPF record holding every term of ``current`` plus the provider's includes.

    ``+all``/``?all`` become ``~all``; a record without an ending gets ``~all``. Records that do not
    parse contribute their terms as written (the user has to fix those anyway). With no record at
    all, the account's SMTP host stands in for the sending servers (``a:<host>``).
    """
    terms: list[str] = []
    redirect: str | None = None
    for text in current or ():
        for token in text.split(" ")[1:]:
            if not token:
                continue
            lowered = token.lower()
            if lowered.lstrip("+-~?") == "all":
                continue
            if lowered.startswith("redirect="):
                redirect = redirect or token
                continue
            if token not in terms:
                terms.append(token)
    for name in includes:
        if f"include:{name}".lower() not in (t.lower() for t in terms):
            terms.append(f"include:{name}")
    if not terms and redirect is None:
        terms.append(f"a:{sending_host}" if "." in sending_host else "mx")
    ending = [redirect] if redirect else ["~all"]
    return " ".join(["v=spf1", *terms, *ending])


# --------------------------------------------------------------------------------------------------
# DKIM


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
        if _report_unavailable(out, lookups, f"whether {domain} publishes a DKIM key"):
            facts.unknown = True
            out.summary = f"could not look up every DKIM selector of {domain}"
            return _finish(out, lookups)
        _report_missing(ctx, out, selectors, [parent, *answers], no_keys_below=no_keys_below)
        out.summary = f"no DKIM key found for {domain}"
        return _finish(out, lookups)
    if not facts.usable and _report_unavailable(out, lookups, f"whether {domain} has a usable DKIM key"):
        facts.unknown = True
    if facts.usable and not out.findings:
        out.summary = f"{domain} publishes DKIM keys at {', '.join(facts.usable)}"
    elif facts.usable:
        out.summary = f"{domain} has usable DKIM keys at {', '.join(facts.usable)}, with problems"
    else:
        out.summary = f"{domain} has no usable DKIM key"
    return _finish(out, lookups)


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


# --------------------------------------------------------------------------------------------------
# DMARC


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
    org = organisational_domain(domain)
    candidates = [domain] if org == domain else [domain, org]
    found: tuple[str, list[str], Lookup] | None = None
    for candidate in candidates:
        lookup = await lookups.get(f"_dmarc.{candidate}", "TXT")
        if not lookup.definite:
            facts.unknown = True
            _report_unavailable(out, lookups, f"whether {domain} publishes DMARC")
            out.summary = f"could not look up the DMARC record of {domain}"
            return _finish(out, lookups)
        texts = [t for t in lookup.answer.texts() if is_dmarc_record(t)]
        if texts:
            found = (candidate, texts, lookup)
            break
    if found is None:
        out.add(
            "dns.dmarc.missing",
            Severity.FAIL,
            f"The domain {domain} publishes no DMARC record (looked at "
            + " and ".join(f"_dmarc.{c}" for c in candidates)
            + "), which Gmail, Yahoo and Outlook.com require of bulk senders.",
            fix=f"Publish a TXT record at _dmarc.{domain}: {starter_dmarc(domain)}",
            looked_at=[f"_dmarc.{c}" for c in candidates],
        )
        out.summary = f"{domain} has no DMARC record"
        return _finish(out, lookups)
    where, texts, lookup = found
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
        return _finish(out, lookups)
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
        return _finish(out, lookups)
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
    return _finish(out, lookups)


async def _check_report_destinations(
    ctx: CheckContext, out: Outcome, lookups: Lookups, where: str, record: DmarcRecord
) -> None:
    # RFC 7489 7.1: a report address outside the policy's organisational domain must agree to
    # receive the reports with a record at <policy-domain>._report._dmarc.<destination>.
    external = sorted(
        {
            uri.domain
            for uri in (*record.rua, *record.ruf)
            if uri.domain and organisational_domain(uri.domain) != organisational_domain(where)
        }
    )
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
    _report_unavailable(out, lookups, "whether the DMARC report addresses accept reports")
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
        out.add(
            "dns.unavailable",
            Severity.ERROR,
            f"Could not judge readiness for Gmail, Yahoo and Outlook.com, because the {', '.join(unknown)} "
            f"check{'s' if len(unknown) > 1 else ''} could not tell.",
            fix=_UNAVAILABLE_FIX,
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


CHECKS: Final = [
    CheckSpec("dns.mx", "MX records", Family.DNS, check_mx),
    CheckSpec("dns.spf", "SPF record", Family.DNS, check_spf),
    CheckSpec("dns.dkim", "DKIM keys", Family.DNS, check_dkim),
    CheckSpec("dns.dmarc", "DMARC policy", Family.DNS, check_dmarc),
    CheckSpec(
        "dns.receivers",
        "Receiver readiness",
        Family.DNS,
        check_receivers,
        needs=("dns.spf", "dns.dkim", "dns.dmarc"),
    ),
]
