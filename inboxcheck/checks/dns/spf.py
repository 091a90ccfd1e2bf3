"""SPF (RFC 7208): one valid record, the provider's include, lookups counted over the whole tree."""

from __future__ import annotations

import asyncio
import fnmatch
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
    spf_texts,
)
from inboxcheck.dns.client import DnsAnswer
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.spf import (
    LOOKUP_LIMIT,
    MX_NAMES_LIMIT,
    VOID_LOOKUP_LIMIT,
    Mechanism,
    MechanismKind,
    Modifier,
    Qualifier,
    SpfRecord,
    parse_spf,
)
from inboxcheck.dns.spf_eval import SpfResult, evaluate
from inboxcheck.dns.spf_record import RecordStatus, fetch_record

# --------------------------------------------------------------------------------------------------
# SPF

# Following include/redirect: deeper than this is certainly over the lookup limit, and the bound
# keeps a hostile tree (a thousand includes) from costing a thousand queries.
_MAX_SPF_DEPTH: Final = 10
_MAX_SPF_RECORDS: Final = 60
# Terms that need DNS and are really looked up, across the whole tree. A receiver stops at the 11th
# (RFC 7208 4.6.4); twice that keeps the reported count exact for records a little over the limit,
# and a record with thousands of terms costs no more than this. Terms past it are counted, unasked.
_MAX_RESOLVED_TERMS: Final = 2 * LOOKUP_LIMIT
# Terms listed in the details and evidence (the count covers them all).
_MAX_LISTED_TERMS: Final = 50
# The client whose check_host() the DNS check asks for: an address no record lists (0.0.0.0/8 is
# "this network", never a sender), so that the evaluation walks every term.
_UNLISTED_CLIENT: Final = "0.0.0.1"


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
        self.resolved = 0
        self.unresolved = 0
        self._seen: dict[tuple[str, str], Lookup] = {}

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        """The check's lookups (CNAMEs followed, each kept for the evidence) as the evaluator asks."""
        lookup = await self.lookups.get(name, rdtype)
        self._seen[(name, rdtype)] = lookup
        return lookup.answer

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
        if self.resolved >= _MAX_RESOLVED_TERMS:
            self.unresolved += 1
            return node
        self.resolved += 1
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
        fetched = await fetch_record(self.resolve, target)
        lookup = self._seen.get((target, "TXT"))
        evidence: JsonValue = lookup.evidence() if lookup is not None else {"name": target, "type": "TXT"}
        if fetched.status is RecordStatus.UNAVAILABLE:
            return
        if fetched.status is RecordStatus.NONE:
            if lookup is not None and not lookup.answer.ok:
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
                lookup=evidence,
            )
            return
        if fetched.status is RecordStatus.MULTIPLE:
            self.problem(
                "dns.spf.multiple",
                Severity.FAIL,
                f"The domain {target}, {kind}d by the SPF record of {domain}, has {len(fetched.texts)} SPF "
                "records, a permanent error for receivers.",
                f"Ask the owner of {target} to publish a single SPF record, or remove {term.text}.",
                domain=target,
                records=list(fetched.texts),
            )
            return
        if fetched.record is None:
            exc = fetched.error
            assert exc is not None
            self.problem(
                "dns.spf.syntax",
                Severity.FAIL,
                f"The SPF record of {target}, {kind}d by {domain}, is invalid: {exc.message} "
                f"(character {exc.position + 1}).",
                f"Fix the record of {target}, or remove {term.text}.",
                domain=target,
                record=fetched.texts[0],
                position=exc.position,
                pointer=exc.pointer(),
            )
            return
        record = fetched.record
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
        report_unavailable(out, lookups, f"whether {domain} publishes SPF")
        out.summary = f"could not look up the SPF record of {domain}"
        return finish(out, lookups)
    texts = spf_texts(txt)
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
        return finish(out, lookups)
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
        return finish(out, lookups)
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
        return finish(out, lookups)
    facts.parsed = record
    walk = _SpfWalk(lookups)
    costs = await walk.cost_of(domain, record, (domain,))
    total = sum(item.cost for item in costs)
    facts.lookups = total
    facts.includes = walk.includes
    listed: list[JsonValue] = [item.as_json() for item in costs[:_MAX_LISTED_TERMS]]
    out.details.update(
        lookup_count=total,
        lookup_limit=LOOKUP_LIMIT,
        headroom=LOOKUP_LIMIT - total,
        terms=listed,
        void_lookups=len(walk.void),
    )
    if len(costs) > _MAX_LISTED_TERMS:
        out.details["terms_not_listed"] = len(costs) - _MAX_LISTED_TERMS
    if walk.truncated or walk.unresolved:
        out.details["truncated"] = True
    if walk.unresolved:
        out.details["terms_not_looked_up"] = walk.unresolved
    if report_unavailable(out, lookups, f"how many lookups the SPF record of {domain} needs"):
        facts.unknown = True
    for problem in walk.problems:
        out.add(problem.code, problem.severity, problem.message, fix=problem.fix, **problem.evidence)
    if total > LOOKUP_LIMIT:
        expensive = sorted(costs, key=lambda item: item.cost, reverse=True)
        unasked = (
            f" (at least: past the first {_MAX_RESOLVED_TERMS} terms that need DNS, the other "
            f"{walk.unresolved} were counted as one lookup each without being looked up)"
            if walk.unresolved
            else ""
        )
        out.add(
            "dns.spf.too_many_lookups",
            Severity.FAIL,
            f"The SPF record of {domain} needs {total} DNS lookups{unasked}, over the limit of "
            f"{LOOKUP_LIMIT} (RFC 7208 4.6.4), so receivers return a permanent error and SPF fails.",
            fix="Remove includes of services you no longer use, or replace the costliest ones ("
            + ", ".join(f"{item.term} costs {item.cost}" for item in expensive[:3])
            + ") with the ip4:/ip6: ranges they stand for.",
            lookup_count=total,
            lookup_limit=LOOKUP_LIMIT,
            terms_not_looked_up=walk.unresolved,
            terms=listed,
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
    await _check_unlisted_client(out, walk, domain)
    _check_permissive(out, walk, domain, record, facts, ctx)
    _check_provider_include(ctx, out, walk, facts, record)
    facts.valid = not any(f.severity in (Severity.FAIL, Severity.ERROR) for f in out.findings)
    if not out.findings:
        out.summary = f"{domain} has a valid SPF record using {total} of {LOOKUP_LIMIT} lookups"
    elif facts.unknown and facts.valid:
        out.summary = f"could not evaluate the whole SPF record of {domain}"
    else:
        out.summary = f"the SPF record of {domain} has problems ({total} of {LOOKUP_LIMIT} lookups)"
    return finish(out, lookups)


async def _check_unlisted_client(out: Outcome, walk: _SpfWalk, domain: str) -> None:
    """What a receiver's check_host() (the one evaluator) says for a server the record does not list.

    Evaluating for such a client walks every term, expanding macros the audit can only count, so
    it finds the permanent errors the audit cannot see: macro terms that find nothing (the void
    limit), a macro include or redirect to no record, the MX limit behind a macro. Listed servers
    may still pass if they match before the error, hence a warning; when the audit has already
    reported a permanent error, this adds nothing.
    """
    if any(f.severity in (Severity.FAIL, Severity.ERROR) for f in out.findings):
        return
    verdict = await evaluate(walk.resolve, _UNLISTED_CLIENT, domain)
    out.details["unlisted_client"] = {
        "ip": _UNLISTED_CLIENT,
        "result": verdict.result.value,
        "mechanism": verdict.mechanism,
        "reason": verdict.reason,
    }
    if verdict.result is SpfResult.PERMERROR:
        out.add(
            "dns.spf.permerror",
            Severity.WARN,
            f"For a server its SPF record does not list, evaluating {domain} ends in a permanent error "
            f"({verdict.reason}), not in a fail: receivers cannot tell forged mail from broken DNS, and "
            "a server listed after the error gets the same.",
            fix="Fix the term named: remove macro terms that find nothing, and point include and "
            "redirect at names that publish one SPF record.",
            ip=_UNLISTED_CLIENT,
            result=verdict.result.value,
            reason=verdict.reason,
            lookup_terms=verdict.lookup_terms,
            void_lookups=verdict.void_lookups,
        )


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
    if preset is None or preset.is_generic or ctx.account.domain in preset.address_domains:
        # The provider's own address domain (icloud.com, zoho.com): its SPF is the provider's business.
        return []
    host = ctx.account.smtp_host.lower().rstrip(".")
    for pattern, includes in preset.dns.spf_includes_by_host.items():
        if fnmatch.fnmatchcase(host, pattern):
            return list(includes)
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
