"""The provider error knowledge base: a server's reply in, a cause and a fix out.

The rules are data (``inboxcheck/knowledge/*.toml``, shipped inside the package), one per reply a
provider is known to give, each naming the finding code, the cause, the fix, its source and the exact
reply it was written from (``example``, which the tests serve from a scripted peer). This module only
loads and matches them; :func:`match_reply` is pure.

Matching reads a reply's standard codes before its words. *Standard* rules (``standard = true``) key
only on what the RFCs define: the SMTP reply class (RFC 5321; a ``4yz`` reply or a ``4.x.x`` enhanced
status, RFC 3463, is temporary) and the IMAP response codes of RFC 5530 (``[UNAVAILABLE]``,
``[AUTHENTICATIONFAILED]``, ...). When one applies it decides, and a text rule may only refine it by
naming it (``refines``): a server that says ``454 4.7.0`` has not judged the password, whatever its
words look like.

Otherwise a rule applies when every field it sets agrees with the reply (protocol, provider, SMTP
reply code and enhanced status code, IMAP status and response code, a case-insensitive text pattern).
A rule scoped to ``providers`` applies when one of them is among the account's candidate providers,
unless it is ``unambiguous`` (its words are that provider's alone, so they mean the same from any
host). Of the rules that apply, the most specific wins: a provider's own rule beats a generic one,
so Microsoft's ``NO LOGIN failed.`` means "IMAP password logins are retired" while the same words
from an unknown server mean "wrong credentials".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inboxcheck._errors import KnowledgeError
from inboxcheck._models import Severity
from inboxcheck._packaged import packaged_files, parse_toml

__all__ = [
    "KnowledgeBase",
    "ParsedReply",
    "ReplyMatch",
    "Rule",
    "alert_text",
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
_ALERT: Final = re.compile(r"\[ALERT\][ \t]*([^\r\n]*)", re.IGNORECASE)
MAX_ALERT: Final = 500


class Rule(BaseModel):
    """One known reply and what it means."""

    # Built when the rules are first read (a reply to explain), not by every run that imports this.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    protocol: Protocol
    providers: tuple[str, ...] = Field(default=(), description="Preset ids; empty means any server.")
    unambiguous: bool = Field(
        default=False,
        description="The provider's words are its own: the rule applies whatever provider the account has.",
    )
    standard: bool = Field(
        default=False,
        description="Keys only on a standard code (SMTP reply class, RFC 5530 code) and decides first.",
    )
    refines: str | None = Field(default=None, description="The standard rule this text rule refines.")
    credential: Literal["password", "oauth2"] | None = Field(
        default=None, description="The rule reads a reply to this kind of login only (none: either)."
    )
    reply_class: Literal[2, 3, 4, 5] | None = Field(
        default=None, description="SMTP: the reply code's first digit, or the enhanced status's class."
    )
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
            try:
                re.compile(value)
            except re.error as exc:  # not a ValueError: pydantic would let it escape unexplained
                raise ValueError(f"the pattern does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.unambiguous and not self.providers:
            raise ValueError("unambiguous names whose words these are: it needs providers")
        if self.standard and (self.providers or self.pattern or self.refines):
            raise ValueError("a standard rule keys on standard codes only (no providers, pattern, refines)")
        if self.reply_class is not None and self.protocol != "smtp":
            raise ValueError("reply_class is an SMTP field")
        return self

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
            + (1 if self.reply_code or self.status or self.reply_class else 0)
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
        standard = {rule.id for rule in rules if rule.standard}
        for rule in rules:
            if rule.refines is not None and rule.refines not in standard:
                raise KnowledgeError(f"rule {rule.id!r} refines {rule.refines!r}, which is no standard rule")
        self.rules = tuple(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def match(
        self, reply: ParsedReply, *, providers: Sequence[str] = (), credential: str = "password"
    ) -> ReplyMatch | None:
        """The rule that explains ``reply`` for an account whose candidate providers (preset ids,
        most likely first) are ``providers``, to a login with a ``credential`` (``password`` or
        ``oauth2``); None when no rule knows the reply."""
        if isinstance(providers, str):
            raise TypeError("providers is a sequence of preset ids, not one string")
        candidates = tuple(providers)
        decided = _best([r for r in self.rules if r.standard and _applies(r, reply, candidates)], candidates)
        pool = [
            rule
            for rule in self.rules
            if not rule.standard
            and rule.credential in (None, credential)
            and (decided is None or rule.refines == decided.id)
            and _applies(rule, reply, candidates)
        ]
        best = _best(pool, candidates) or decided
        return ReplyMatch(best, reply) if best is not None else None


def _best(rules: list[Rule], providers: tuple[str, ...]) -> Rule | None:
    """The most specific rule; of equals, the one of the likelier provider, then the first in file order."""

    def rank(rule: Rule) -> tuple[int, int]:
        own = [providers.index(p) for p in rule.providers if p in providers]
        return (-rule.specificity, min(own) if own else len(providers))

    return min(rules, key=rank) if rules else None


def _applies(rule: Rule, reply: ParsedReply, providers: tuple[str, ...]) -> bool:
    if rule.protocol != reply.protocol:
        return False
    if rule.providers and not rule.unambiguous and not set(rule.providers) & set(providers):
        return False
    if rule.reply_class is not None and not _in_class(reply, rule.reply_class):
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


def _in_class(reply: ParsedReply, digit: int) -> bool:
    # RFC 3463: the enhanced status's class says the same as the reply code's first digit; a server
    # that sends either as temporary has said "try again later".
    by_code = reply.reply_code is not None and reply.reply_code // 100 == digit
    by_enhanced = reply.enhanced is not None and reply.enhanced.startswith(f"{digit}.")
    return by_code or by_enhanced


def match_reply(
    protocol: Protocol,
    reply: str,
    *,
    providers: Sequence[str] = (),
    reply_code: int | None = None,
    knowledge: KnowledgeBase | None = None,
    credential: str = "password",
) -> ReplyMatch | None:
    """The rule that explains ``reply``, if any, for an account whose candidate providers are
    ``providers`` (preset ids, most likely first; empty when none is known).

    ``reply`` is the reply's text as the server sent it; for SMTP, ``reply_code`` may be given when
    the text is only the lines' text (as aiosmtplib returns it).
    """
    kb = knowledge if knowledge is not None else load_knowledge()
    parsed = parse_smtp_reply(reply, reply_code) if protocol == "smtp" else parse_imap_reply(reply)
    return kb.match(parsed, providers=providers, credential=str(credential))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def alert_text(reply: str) -> str | None:
    """The text of an IMAP ``[ALERT]`` in ``reply`` (RFC 9051 7.1: it must be shown to the user),
    with control characters escaped so that it cannot drive a terminal; None when there is none."""
    found = [m.group(1).strip() for m in _ALERT.finditer(reply)]
    text = " ".join(t for t in found if t)
    if not text:
        return None
    escaped = "".join(c if c.isprintable() else _escape(c) for c in text)
    return escaped[:MAX_ALERT]


def load_rules(text: str, *, source: str) -> list[Rule]:
    data = parse_toml(text, source=source, error=KnowledgeError)
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
    for file in packaged_files("knowledge"):
        rules.extend(load_rules(file.read_text(encoding="utf-8"), source=f"inboxcheck/knowledge/{file.name}"))
    if not rules:
        raise KnowledgeError("the knowledge base is empty: inboxcheck/knowledge/*.toml is missing; reinstall")
    return KnowledgeBase(rules)
