"""The provider error knowledge base: a server's reply in, a cause and a fix out.

The rules are data (``inboxcheck/knowledge/*.toml``, shipped inside the package), one per reply a
provider is known to give, each naming the finding code, the cause, the fix, its source and the exact
reply it was written from (``example``, which the tests serve from a scripted peer). This module only
loads and matches them; :func:`match_reply` is pure.

Matching: a rule applies when every field it sets agrees with the reply (protocol, provider, SMTP
reply code and enhanced status code, IMAP status and response code, a case-insensitive text pattern).
Of the rules that apply, the most specific wins: a provider's own rule beats a generic one, so
Microsoft's ``NO LOGIN failed.`` means "IMAP password logins are retired" while the same words from
an unknown server mean "wrong credentials".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inboxcheck._errors import KnowledgeError
from inboxcheck._models import Severity

__all__ = [
    "KnowledgeBase",
    "ParsedReply",
    "ReplyMatch",
    "Rule",
    "load_knowledge",
    "match_reply",
    "parse_imap_reply",
    "parse_smtp_reply",
]

Protocol = Literal["smtp", "imap"]

_ENHANCED: Final = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_SMTP_LINE: Final = re.compile(r"^(\d{3})([ -]?)(.*)$")
_IMAP_TAGGED: Final = re.compile(r"^(?:\S+\s+)?(OK|NO|BAD|BYE|PREAUTH)\b\s*(.*)$", re.IGNORECASE)
_RESPONSE_CODE: Final = re.compile(r"\[([A-Za-z][A-Za-z0-9-]*)")


class Rule(BaseModel):
    """One known reply and what it means."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    protocol: Protocol
    providers: tuple[str, ...] = Field(default=(), description="Preset ids; empty means any server.")
    reply_code: Annotated[int, Field(ge=200, le=599)] | None = None
    enhanced: Annotated[str, Field(pattern=r"^[245]\.\d{1,3}\.\d{1,3}$")] | None = None
    status: Literal["NO", "BAD", "BYE"] | None = None
    response_code: str | None = None
    pattern: str | None = None
    code: Annotated[str, Field(pattern=r"^(smtp|imap)\.[a-z0-9_]+(\.[a-z0-9_]+)+$")]
    severity: Severity = Severity.FAIL
    message: str
    fix: str
    source: str
    example: str = Field(description="The exact reply this rule was written from.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @cached_property
    def regex(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern, re.IGNORECASE) if self.pattern else None

    @property
    def specificity(self) -> int:
        return (
            (16 if self.providers else 0)
            + (4 if self.enhanced else 0)
            + (2 if self.response_code else 0)
            + (2 if self.pattern else 0)
            + (1 if self.reply_code or self.status else 0)
        )


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into what rules look at. ``text`` is everything after the codes."""

    protocol: Protocol
    verbatim: str
    text: str
    reply_code: int | None = None
    enhanced: str | None = None
    status: str | None = None
    response_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplyMatch:
    """The rule a reply matched, and the reply as parsed."""

    rule: Rule
    reply: ParsedReply


def parse_smtp_reply(reply: str, code: int | None = None) -> ParsedReply:
    """Parse an SMTP reply, given as the server sent it (``535-5.7.8 ...`` lines) or as a code plus
    the text of its lines (what aiosmtplib hands back)."""
    lines = [line for line in reply.replace("\r\n", "\n").split("\n") if line.strip()]
    texts: list[str] = []
    for line in lines:
        match = _SMTP_LINE.match(line)
        if match and (match.group(2) or match.group(3) == ""):
            code = code if code is not None else int(match.group(1))
            texts.append(match.group(3))
        else:
            texts.append(line)
    enhanced = None
    stripped: list[str] = []
    for text in texts:
        found = _ENHANCED.match(text)
        if found:
            enhanced = enhanced or ".".join(found.groups())
            text = text[found.end() :]
        stripped.append(text.strip())
    return ParsedReply("smtp", reply, " ".join(stripped).strip(), code, enhanced)


def parse_imap_reply(reply: str) -> ParsedReply:
    """Parse an IMAP status reply (``NO [CODE] text``, with or without its tag or ``*``); several
    lines (untagged responses, then the tagged one) are read together."""
    status = None
    texts: list[str] = []
    for line in reply.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        match = _IMAP_TAGGED.match(line)
        if match:
            status = match.group(1).upper() if status is None or line[0] != "*" else status
            texts.append(match.group(2))
        else:
            texts.append(line)
    text = " ".join(texts)
    return ParsedReply(
        "imap",
        reply,
        text,
        status=status,
        response_codes=tuple(c.upper() for c in _RESPONSE_CODE.findall(text)),
    )


class KnowledgeBase:
    """A loaded set of rules, in file order."""

    def __init__(self, rules: list[Rule]) -> None:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise KnowledgeError(f"two knowledge rules have the id {rule.id!r}")
            seen.add(rule.id)
        self.rules = tuple(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def match(
        self, reply: ParsedReply, *, provider: str | None = None, candidates: Sequence[str] = ()
    ) -> ReplyMatch | None:
        """The most specific rule for ``reply`` from a server of ``provider`` or of any of the
        ``candidates`` (preset ids, most likely first); of two equally specific provider rules, the
        one of the likelier candidate wins."""
        providers = tuple(dict.fromkeys([*([provider] if provider else []), *candidates]))
        best: Rule | None = None
        for rule in self.rules:
            if _applies(rule, reply, providers) and (
                best is None or _weight(rule, providers) > _weight(best, providers)
            ):
                best = rule
        return ReplyMatch(best, reply) if best is not None else None


def _weight(rule: Rule, providers: tuple[str, ...]) -> tuple[int, int]:
    rank = min((providers.index(p) for p in rule.providers if p in providers), default=len(providers))
    return rule.specificity, -rank


def _applies(rule: Rule, reply: ParsedReply, providers: tuple[str, ...]) -> bool:
    if rule.protocol != reply.protocol:
        return False
    if rule.providers and not any(p in rule.providers for p in providers):
        return False
    if rule.reply_code is not None and rule.reply_code != reply.reply_code:
        return False
    if rule.enhanced is not None and rule.enhanced != reply.enhanced:
        return False
    if rule.status is not None and rule.status != reply.status:
        return False
    if rule.response_code is not None and rule.response_code.upper() not in reply.response_codes:
        return False
    return rule.regex is None or rule.regex.search(reply.text) is not None


def match_reply(
    protocol: Protocol,
    reply: str,
    *,
    provider: str | None = None,
    candidates: Sequence[str] = (),
    reply_code: int | None = None,
    knowledge: KnowledgeBase | None = None,
) -> ReplyMatch | None:
    """The rule that explains ``reply`` from a server of ``provider`` (a preset id) or of one of the
    ``candidates`` (preset ids, most likely first), if any.

    ``reply`` is the reply's text as the server sent it; for SMTP, ``reply_code`` may be given when
    the text is only the lines' text (as aiosmtplib returns it).
    """
    kb = knowledge if knowledge is not None else load_knowledge()
    parsed = parse_smtp_reply(reply, reply_code) if protocol == "smtp" else parse_imap_reply(reply)
    return kb.match(parsed, provider=provider, candidates=candidates)


def _knowledge_files() -> list[Traversable]:
    folder = resources.files("inboxcheck").joinpath("knowledge")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)


def load_rules(text: str, *, source: str) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"{source}: not valid TOML: {exc}") from exc
    rules = []
    for index, item in enumerate(data.get("rule", [])):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
            )
            raise KnowledgeError(f"{source}: rule {index + 1} is invalid: {problems}") from None
    return rules


@cache
def load_knowledge() -> KnowledgeBase:
    """The bundled knowledge base (loaded once; it is immutable)."""
    rules: list[Rule] = []
    for file in _knowledge_files():
        rules.extend(load_rules(file.read_text(encoding="utf-8"), source=f"inboxcheck/knowledge/{file.name}"))
    if not rules:
        raise KnowledgeError("the knowledge base is empty: inboxcheck/knowledge/*.toml is missing; reinstall")
    return KnowledgeBase(rules)
