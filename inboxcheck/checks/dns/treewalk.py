"""The DNS Tree Walk of RFC 9989 (DMARCbis) 4.10: where a domain's DMARC policy is published, and which
domain is its organisational domain, found from the ``_dmarc`` records themselves instead of a public
suffix list (so ``shop.acme.co.uk`` belongs to ``acme.co.uk``, not to ``co.uk``).

A walk asks ``_dmarc.<domain>``, then each parent up to the top-level domain; a name of eight labels or
more jumps to its last seven first, so a walk costs at most eight queries. Every query goes through the
run's DNS client, so walks for related names (the author domain, its report destinations, two login
hosts) share their answers.

The organisational domain is never a public suffix: a record at a top-level name, or at a name the
bundled Public Suffix List (``publicsuffixlist``, read once, without network) calls a suffix, marks
the suffix only with ``psd=y``, and otherwise counts for nothing. Without that floor, a ``_dmarc.test``
record (or an MX host ``test.``) would make every ``*.test`` host "the same organisation".
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from inboxcheck.checks.dns.lookups import Lookup, Lookups
from inboxcheck.dns.records._common import RecordSyntaxError
from inboxcheck.dns.records.dmarc import is_dmarc_record, parse_dmarc

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

MAX_WALK_QUERIES: Final = 8
_SKIP_FROM: Final = 8  # names with this many labels or more jump to their last seven


def _bundled_rules() -> tuple[str, ...]:
    """The lines of the Public Suffix List the package bundles, lower-cased, read once (a few ms).

    Read as the library reads its file: UTF-8 with surrogate escapes, lines ended by a line feed. The
    walks of one run start together, each asking from a thread: one reads, the others wait for it."""
    with _RULES_LOCK:
        return _read_bundled_rules()


_RULES_LOCK: Final = threading.Lock()


@functools.cache
def _read_bundled_rules() -> tuple[str, ...]:
    from publicsuffixlist import PSLFILE

    with Path(PSLFILE).open(encoding="utf-8", errors="surrogateescape", newline="") as file:
        return tuple(file.read().lower().split("\n"))


#: Top-level names judged with a cut list before the whole list is parsed instead: a run asks about
#: one or two, and a long batch or the service about many (a cut costs 0.5-4 ms, the whole 35 ms).
CUT_LISTS: Final = 16
_cut_lists: dict[str, PublicSuffixList] = {}


def _suffix_list(top: str) -> PublicSuffixList:
    """The list that judges names under the top-level name ``top``: cut to its rules
    (:func:`_cut_list`) for the first :data:`CUT_LISTS` names asked, the whole list after them."""
    found = _cut_lists.get(top)
    if found is not None:
        return found
    if len(_cut_lists) >= CUT_LISTS:
        return _whole_list()
    return _cut_lists.setdefault(top, _cut_list(top))


def _whole_list() -> PublicSuffixList:
    with _RULES_LOCK:  # walks that ask together parse it once
        return _parse_whole_list()


@functools.cache
def _parse_whole_list() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the list the package bundles (ICANN and private sections)


def _cut_list(top: str) -> PublicSuffixList:
    """The bundled list (ICANN and private sections) cut to the rules under the top-level name ``top``.

    Whether a name is a public suffix depends only on the rules that end in its own top-level label
    (and on the default rule, which the library applies by itself), so the answer equals the whole
    list's (a test compares them for every rule of the list); parsing the whole list cost every run
    that asked 35 ms, most of it encoding the internationalised rules."""
    from publicsuffixlist import PublicSuffixList

    forms = {top, _other_form(top)}  # the list writes most internationalised rules in Unicode
    lines = _bundled_rules()
    candidates = {line for form in forms for line in [line for line in lines if form in line]}
    rules = [rule for line in candidates if (rule := line.split(" ")[0].rstrip())]  # as the library reads
    return PublicSuffixList(
        rule for rule in rules if not rule.startswith("//") and rule.rsplit(".", 1)[-1].lstrip("!") in forms
    )


def _other_form(label: str) -> str:
    """The A-label of a U-label and the other way round (IDNA 2003, as the library encodes its
    rules); the label itself when it has no other form."""
    try:
        if not label.isascii():
            return label.encode("idna").decode("ascii")
        if label.startswith("xn--"):
            return label.encode("ascii").decode("idna")
    except UnicodeError:
        pass
    return label


async def load_public_suffixes() -> None:
    """Reads the bundled Public Suffix List once, off the event loop (and parses it whole there,
    once :data:`CUT_LISTS` top-level names have been asked)."""
    if _read_bundled_rules.cache_info().currsize == 0:
        await asyncio.to_thread(_bundled_rules)
    if len(_cut_lists) >= CUT_LISTS and _parse_whole_list.cache_info().currsize == 0:
        await asyncio.to_thread(_whole_list)


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` (A-labels) is a public suffix: a top-level name (``test``, ``com``), or a
    suffix of the bundled list (``co.uk``, ``github.io``). No organisation is one."""
    name = name.strip().rstrip(".").lower()
    if "." not in name:
        return True
    return bool(_suffix_list(name.rsplit(".", 1)[-1]).is_public(name))


def same_organisation(first: str | None, second: str | None) -> bool:
    """Two organisational domains name one organisation: known, equal, and not a public suffix (a
    suffix-level answer means "not the same organisation")."""
    return first is not None and first == second and not is_public_suffix(first)


def walk_targets(domain: str) -> list[str]:
    """The names whose ``_dmarc`` a walk from ``domain`` may ask, in order (at most eight)."""
    labels = [label for label in domain.strip().rstrip(".").lower().split(".") if label]
    if not labels:
        return []
    targets = [".".join(labels)]
    rest = labels[-(_SKIP_FROM - 1) :] if len(labels) >= _SKIP_FROM else labels[1:]
    while rest:
        targets.append(".".join(rest))
        rest = rest[1:]
    return targets


@dataclass(frozen=True)
class Found:
    """DMARC records at one name of the walk."""

    domain: str
    texts: tuple[str, ...]
    lookup: Lookup

    @property
    def psd(self) -> str:
        """The record's ``psd`` tag (y, n or u); u when there is not exactly one readable record."""
        if len(self.texts) != 1:
            return "u"
        try:
            return parse_dmarc(self.texts[0]).psd
        except RecordSyntaxError:
            return "u"


@dataclass(frozen=True)
class PolicyWalk:
    """Where the policy for a domain was found (None: nowhere), or the lookup that could not tell."""

    found: Found | None
    looked_at: tuple[str, ...]
    unknown: Lookup | None = None


async def _ask(lookups: Lookups, domain: str) -> Found | Lookup | None:
    """The DMARC records at ``domain``; the lookup itself when it could not tell; None for none."""
    lookup = await lookups.get(f"_dmarc.{domain}", "TXT")
    if not lookup.definite:
        return lookup
    texts = tuple(text for text in lookup.answer.texts() if is_dmarc_record(text))
    return Found(domain, texts, lookup) if texts else None


async def discover_policy(lookups: Lookups, domain: str) -> PolicyWalk:
    """RFC 9989 4.10.1: the first DMARC record found walking up from ``domain``."""
    looked_at: list[str] = []
    for target in walk_targets(domain):
        looked_at.append(f"_dmarc.{target}")
        found = await _ask(lookups, target)
        if isinstance(found, Lookup):
            return PolicyWalk(None, tuple(looked_at), unknown=found)
        if found is not None:
            return PolicyWalk(found, tuple(looked_at))
    return PolicyWalk(None, tuple(looked_at))


async def organisational_domain(lookups: Lookups, domain: str) -> str | None:
    """RFC 9989 4.10.2: the organisational domain of ``domain``, or None when a lookup could not tell.

    A record with ``psd=n`` marks its own domain; one with ``psd=y`` (other than at ``domain``
    itself) marks a public suffix, whose child on the way to ``domain`` is the organisational domain;
    otherwise the record with the fewest labels decides, and with no record at all ``domain`` is its
    own organisational domain. A record at a public suffix (:func:`is_public_suffix`) counts only
    with ``psd=y``: the answer is a public suffix only when ``domain`` itself is one (which
    :func:`same_organisation` then reads as "no organisation").
    """
    targets = walk_targets(domain)
    if not targets:
        return None
    await load_public_suffixes()
    labels = targets[0].split(".")
    highest: str | None = None
    for target in targets:
        found = await _ask(lookups, target)
        if isinstance(found, Lookup):
            return None
        if found is None:
            continue
        psd = found.psd
        if psd == "y" and target != targets[0]:
            return ".".join(labels[-(target.count(".") + 2) :])
        if is_public_suffix(target) and target != targets[0]:
            continue  # a suffix's own record: no organisation spans a suffix
        highest = target
        if psd == "n":
            return target
    return highest or targets[0]
