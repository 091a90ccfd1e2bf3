"""The DNS blocklists the deliverability checks may ask (data in ``blocklists.toml``), and how
``--blocklist-zone`` names one: a list's id, its zone, or ``[ip:|domain:]ZONE`` for any other list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from inboxcheck._errors import OptionsError
from inboxcheck._packaged import packaged, read_toml

__all__ = ["Blocklist", "known_blocklists", "select_blocklists"]


@dataclass(frozen=True)
class Blocklist:
    id: str
    name: str
    zone: str
    kind: Literal["ip", "domain"]
    delist: str | None = None
    refused: frozenset[str] = frozenset()
    default: bool = False


@cache
def known_blocklists() -> tuple[Blocklist, ...]:
    """The lists in ``blocklists.toml``."""
    data = read_toml(packaged("blocklists.toml"), source="inboxcheck/blocklists.toml")
    return tuple(
        Blocklist(
            id=item["id"],
            name=item["name"],
            zone=item["zone"].lower().rstrip("."),
            kind=item["kind"],
            delist=item.get("delist"),
            refused=frozenset(item.get("refused", ())),
            default=bool(item.get("default", False)),
        )
        for item in data["list"]
    )


def select_blocklists(choices: tuple[str, ...]) -> tuple[Blocklist, ...]:
    """The lists ``--blocklist-zone`` names (the default lists when it names none)."""
    known = known_blocklists()
    if not choices:
        return tuple(b for b in known if b.default)
    by_key = {b.id: b for b in known} | {b.zone: b for b in known}
    chosen: list[Blocklist] = []
    for choice in choices:
        text = choice.strip().lower().rstrip(".")
        kind: str | None = None
        if ":" in text:
            kind, _, text = text.partition(":")
            if kind not in ("ip", "domain"):
                raise OptionsError(f"blocklist {choice!r}: the kind before ':' is 'ip' or 'domain'")
        if not text or " " in text or ("." not in text and text not in by_key):
            raise OptionsError(
                f"blocklist {choice!r}: give a list id ({', '.join(b.id for b in known)}) or "
                "[ip:|domain:]ZONE, e.g. ip:zen.spamhaus.org"
            )
        found = by_key.get(text)
        if found is not None and (kind is None or kind == found.kind):
            chosen.append(found)
        else:
            chosen.append(
                Blocklist(id=text, name=text, zone=text, kind="domain" if kind == "domain" else "ip")
            )
    return tuple(dict.fromkeys(chosen))
