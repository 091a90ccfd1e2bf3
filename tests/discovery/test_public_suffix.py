"""Discovery's trust never widens to a public suffix, and an address's domain is asked in IDNA 2008.

A DMARC record at a top-level name without psd=y, or an MX host that is a bare top-level name, must
not make every name under that suffix "the same organisation" (and so a host a password may go to);
and ``faß.de`` is ``xn--fa-hia.de`` in every lookup, never ``fass.de`` (IDNA 2003), another owner's
domain.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from inboxcheck._check import CheckContext
from inboxcheck._models import Account
from inboxcheck._options import CheckOptions
from inboxcheck._presets import load_presets
from inboxcheck.checks.dns import treewalk
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.checks.dns.treewalk import is_public_suffix, organisational_domain, same_organisation
from inboxcheck.discovery import MailProtocol, discover
from tests.peers import DnsPeer
from tests.scenarios import base_payload


def _lookups(dns: DnsPeer) -> Lookups:
    options = CheckOptions.model_validate({"nameservers": [dns.nameserver], "timeout": 2})
    return Lookups(
        CheckContext(
            Account.model_validate(base_payload()), options=options, presets=load_presets(), match=None
        )
    )


DMARC_AT_THE_TLD = {("_dmarc.test", "TXT"): ['"v=DMARC1; p=none"']}


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("test", True),
        ("com", True),
        ("co.uk", True),
        ("github.io", True),
        ("acme.co.uk", False),
        ("x.test", False),
    ],
)
def test_public_suffixes(name: str, suffix: bool) -> None:
    assert is_public_suffix(name) is suffix


async def test_a_dmarc_record_at_a_top_level_name_makes_no_organisation_of_it() -> None:
    async with DnsPeer(records=DMARC_AT_THE_TLD) as dns:
        lookups = _lookups(dns)
        mine = await organisational_domain(lookups, "mail.victim.test")
        theirs = await organisational_domain(lookups, "imap.evil.test")
    assert ("_dmarc.test", "TXT") in dns.queries
    assert mine == "mail.victim.test" and theirs == "imap.evil.test"  # both "test" before
    assert not same_organisation(mine, theirs)
    assert not same_organisation("test", "test")  # a suffix-level answer is no organisation


async def test_a_psd_record_at_a_top_level_name_still_marks_its_children() -> None:
    records = {("_dmarc.test", "TXT"): ['"v=DMARC1; p=reject; psd=y"']}
    async with DnsPeer(records=records) as dns:
        lookups = _lookups(dns)
        assert await organisational_domain(lookups, "mail.victim.test") == "victim.test"


@pytest.mark.parametrize(
    "records",
    [
        {("victim.test", "MX"): ["10 test."]},  # the MX host is a bare top-level name
        {("victim.test", "MX"): ["10 mx.victim-mail.test."], **DMARC_AT_THE_TLD},  # _dmarc.test, no psd
    ],
    ids=["mx-is-a-tld", "dmarc-at-the-tld"],
)
async def test_no_srv_host_under_the_suffix_is_trusted(records: dict[tuple[str, str], list[str]]) -> None:
    records = {
        **records,
        ("_imaps._tcp.victim.test", "SRV"): ["0 1 993 imap.evil.test."],
        ("_submissions._tcp.victim.test", "SRV"): ["0 1 465 smtp.evil.test."],
    }
    async with DnsPeer(records=records) as dns:
        result = await discover(
            "jane@victim.test", nameservers=[dns.nameserver], timeout=2, autoconfig_port=9, probe=False
        )
    evil = [c for c in result.candidates if c.host.endswith("evil.test")]
    assert {c.protocol for c in evil} == {MailProtocol.SMTP, MailProtocol.IMAP}
    assert not any(c.trusted for c in evil)  # every *.test host was trusted before


async def test_an_address_domain_is_asked_in_idna_2008() -> None:
    async with DnsPeer() as dns:
        await discover("jane@faß.de", nameservers=[dns.nameserver], timeout=2, autoconfig_port=9, probe=False)
    asked = {name for name, _ in dns.queries}
    assert "xn--fa-hia.de" in asked
    assert not any("fass.de" in name for name in asked), sorted(asked)  # IDNA 2003: fass.de before


def test_the_list_cut_to_one_top_level_name_answers_as_the_whole_list() -> None:
    # is_public_suffix parses only the rules under the name's top-level label (a run saves 30 ms):
    # for every rule of the bundled list, the rule's name, a name under it and their A-labels are
    # judged as the whole list judges them.
    from publicsuffixlist import PSLFILE, PublicSuffixList

    whole = PublicSuffixList()
    names: set[str] = set()
    with Path(PSLFILE).open(encoding="utf-8") as file:
        for line in file:
            rule = line.lower().split(" ")[0].rstrip()
            if not rule or rule.startswith("//"):
                continue
            base = rule.lstrip("!").removeprefix("*.")
            for name in (base, f"x.{base}", f"a.b.{base}"):
                names.add(name)
                with contextlib.suppress(UnicodeError):
                    names.add(name.encode("idna").decode("ascii"))
    assert len(names) > 10_000
    cut: dict[str, PublicSuffixList] = {}
    wrong = []
    for name in sorted(names):
        top = name.rsplit(".", 1)[-1]
        judge = cut.get(top) or cut.setdefault(top, treewalk._cut_list(top))
        if judge.is_public(name) != whole.is_public(name):
            wrong.append(name)
    assert not wrong, wrong[:20]


def test_after_many_top_level_names_the_whole_list_judges_alike() -> None:
    # A long batch asks about many top-level names: after CUT_LISTS of them, the whole list.
    from publicsuffixlist import PublicSuffixList

    whole = PublicSuffixList()
    treewalk._cut_lists.clear()
    tops = ["uk", "com", "jp", "de", "io", "test", "au", "br", "ck", "fr", "it", "nl", "no", "pl", "ru"]
    tops += ["se", "us", "xn--p1ai", "рф", "example"]
    names = [n for top in tops for n in (top, f"co.{top}", f"x.co.{top}", "www.ck", f"github.{top}")]
    assert all(is_public_suffix(name) == whole.is_public(name) for name in names)
    assert len(treewalk._cut_lists) == treewalk.CUT_LISTS
    assert treewalk._parse_whole_list.cache_info().currsize == 1
    treewalk._cut_lists.clear()


async def test_walks_that_start_together_read_the_suffix_list_once() -> None:
    # A check run's DMARC walks ask together, each from a thread: the list was parsed twice a run.
    import asyncio

    treewalk._read_bundled_rules.cache_clear()
    await asyncio.gather(*(treewalk.load_public_suffixes() for _ in range(4)))
    assert treewalk._read_bundled_rules.cache_info().misses == 1
