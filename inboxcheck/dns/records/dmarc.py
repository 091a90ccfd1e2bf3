"""DMARC policy records (RFC 7489, with the changes of RFC 9989, "DMARCbis").

:func:`parse_dmarc` returns a :class:`DmarcRecord` with every default filled in (``sp`` = ``p``,
``np`` = ``sp``, ``adkim`` = ``aspf`` = relaxed), or raises :class:`RecordSyntaxError`.

RFC 9989 removed ``pct``, ``rf`` and ``ri`` and added ``np`` (policy for non-existent subdomains),
``t`` (testing, replacing ``pct``'s use as a switch) and ``psd`` (public suffix domain). Both
generations are accepted; tags RFC 9989 removed are kept and listed in :attr:`DmarcRecord.notes` so a
report can say so. Unknown tags are ignored, as both RFCs require.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

from inboxcheck.dns.records._common import RecordSyntaxError, Tag, parse_tag_list

__all__ = ["Alignment", "DmarcRecord", "Policy", "ReportUri", "is_dmarc_record", "parse_dmarc"]

_Choice = TypeVar("_Choice", bound=StrEnum)


class Policy(StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Alignment(StrEnum):
    RELAXED = "r"  # organisational domains must match
    STRICT = "s"  # the exact domain must match

    @property
    def label(self) -> str:
        return "relaxed" if self is Alignment.RELAXED else "strict"


@dataclass(frozen=True)
class ReportUri:
    """One ``rua``/``ruf`` destination; ``address`` and ``domain`` are set for ``mailto:`` URIs."""

    uri: str
    address: str | None = None
    domain: str | None = None
    size_limit: str | None = None


@dataclass(frozen=True)
class DmarcRecord:
    text: str
    policy: Policy
    subdomain_policy: Policy
    nonexistent_policy: Policy
    adkim: Alignment = Alignment.RELAXED
    aspf: Alignment = Alignment.RELAXED
    pct: int = 100
    testing: bool = False
    psd: str = "u"
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    fo: tuple[str, ...] = ("0",)
    tags: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_REMOVED_IN_9989: Final = {
    "pct": "RFC 9989 removed pct; receivers following it apply the policy to all mail (use t=y to test)",
    "rf": "RFC 9989 removed rf; failure reports use one format",
    "ri": "RFC 9989 removed ri; aggregate reports are sent daily",
}
_MAILTO = re.compile(r"mailto:([^!@\s]+@([^!\s]+?))(?:!(\d+[kmgtKMGT]?))?\Z", re.IGNORECASE)
_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}\.?\Z"
)


def is_dmarc_record(text: str) -> bool:
    """Whether a TXT record at ``_dmarc`` is a DMARC record (it starts with ``v=DMARC1``)."""
    return re.match(r"v\s*=\s*DMARC1\s*(;|\Z)", text.lstrip(" \t")) is not None


def parse_dmarc(text: str) -> DmarcRecord:
    """Parse one DMARC record; raise :class:`RecordSyntaxError` at the first error."""
    tags = parse_tag_list(text, what="DMARC record")
    if not tags or tags[0].name != "v":
        raise RecordSyntaxError("the record must start with v=DMARC1", record=text, position=0)
    if tags[0].value != "DMARC1":
        raise RecordSyntaxError(
            f"the version is {tags[0].value[:20]!r}, not DMARC1", record=text, position=tags[0].value_position
        )
    by_name = {tag.name: tag for tag in tags}
    notes: list[str] = []
    if "p" not in by_name:
        # RFC 7489 6.3 makes p required; RFC 9989 reads a record without p (but with rua) as
        # p=none. A sender should not rely on either reading.
        raise RecordSyntaxError(
            "the record has no p= (policy) tag, which is required", record=text, position=len(text)
        )
    if tags[1].name != "p":
        notes.append(
            "p should directly follow v=DMARC1 (RFC 7489 6.4); some receivers reject the record otherwise"
        )
    policy = _policy(text, by_name["p"])
    subdomain_policy = _policy(text, by_name["sp"]) if "sp" in by_name else policy
    nonexistent_policy = _policy(text, by_name["np"]) if "np" in by_name else subdomain_policy
    adkim = _alignment(text, by_name.get("adkim"))
    aspf = _alignment(text, by_name.get("aspf"))
    pct = 100
    if "pct" in by_name:
        tag = by_name["pct"]
        if not re.fullmatch(r"[0-9]{1,3}", tag.value) or int(tag.value) > 100:
            raise RecordSyntaxError(
                f"pct={tag.value[:20]} is not a whole number from 0 to 100",
                record=text,
                position=tag.value_position,
            )
        pct = int(tag.value)
    testing = False
    if "t" in by_name:
        tag = by_name["t"]
        if tag.value not in ("y", "n"):
            raise RecordSyntaxError(
                f"t={tag.value[:20]} must be y or n", record=text, position=tag.value_position
            )
        testing = tag.value == "y"
    psd = "u"
    if "psd" in by_name:
        tag = by_name["psd"]
        if tag.value not in ("y", "n", "u"):
            raise RecordSyntaxError(
                f"psd={tag.value[:20]} must be y, n or u", record=text, position=tag.value_position
            )
        psd = tag.value
    fo: tuple[str, ...] = ("0",)
    if "fo" in by_name:
        tag = by_name["fo"]
        options = tuple(part.strip() for part in tag.value.split(":"))
        if not options or any(option not in ("0", "1", "d", "s") for option in options):
            raise RecordSyntaxError(
                f"fo={tag.value[:20]} must be 0, 1, d or s (colon-separated)",
                record=text,
                position=tag.value_position,
            )
        fo = options
    if "ri" in by_name and not re.fullmatch(r"[0-9]{1,10}", by_name["ri"].value):
        tag = by_name["ri"]
        raise RecordSyntaxError(
            f"ri={tag.value[:20]} is not a number of seconds", record=text, position=tag.value_position
        )
    rua = _uris(text, by_name.get("rua"))
    ruf = _uris(text, by_name.get("ruf"))
    notes.extend(note for name, note in _REMOVED_IN_9989.items() if name in by_name)
    return DmarcRecord(
        text=text,
        policy=policy,
        subdomain_policy=subdomain_policy,
        nonexistent_policy=nonexistent_policy,
        adkim=adkim,
        aspf=aspf,
        pct=pct,
        testing=testing,
        psd=psd,
        rua=rua,
        ruf=ruf,
        fo=fo,
        tags={tag.name: tag.value for tag in tags},
        notes=tuple(notes),
    )


def _policy(text: str, tag: Tag) -> Policy:
    return _choice(text, tag, Policy, "is not a policy; use none, quarantine or reject")


def _alignment(text: str, tag: Tag | None) -> Alignment:
    if tag is None:
        return Alignment.RELAXED
    return _choice(text, tag, Alignment, "must be r (relaxed) or s (strict)")


def _choice(text: str, tag: Tag, choices: type[_Choice], expected: str) -> _Choice:
    """The tag's value as one of ``choices`` (in any case), or the syntax error saying what it may be."""
    try:
        return choices(tag.value.lower())
    except ValueError:
        raise RecordSyntaxError(
            f"{tag.name}={tag.value[:20]} {expected}", record=text, position=tag.value_position
        ) from None


def _uris(text: str, tag: Tag | None) -> tuple[ReportUri, ...]:
    if tag is None:
        return ()
    uris: list[ReportUri] = []
    offset = tag.value_position
    for part in tag.value.split(","):
        uri = part.strip()
        position = offset + (len(part) - len(part.lstrip()))
        offset += len(part) + 1
        if not uri:
            raise RecordSyntaxError(f"{tag.name} has an empty address", record=text, position=position)
        if uri.lower().startswith("mailto:"):
            match = _MAILTO.match(uri)
            if match is None or not _DOMAIN.match(match.group(2)):
                raise RecordSyntaxError(
                    f"{tag.name} address {uri[:60]!r} is not a valid mailto: URI",
                    record=text,
                    position=position,
                )
            uris.append(
                ReportUri(
                    uri,
                    address=match.group(1),
                    domain=match.group(2).rstrip(".").lower(),
                    size_limit=match.group(3),
                )
            )
        elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z", uri):
            uris.append(ReportUri(uri))
        else:
            raise RecordSyntaxError(
                f"{tag.name} address {uri[:60]!r} is not a URI; write mailto:reports@example.com",
                record=text,
                position=position,
            )
    return tuple(uris)
