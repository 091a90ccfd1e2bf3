"""Output formats for a report: text for people, JSON for programs. Both go to standard output.

The text form shows one line per check with a mark, then each finding with its fix beneath, then a
summary line. Colour is used only when asked for (the CLI asks on a terminal without ``NO_COLOR``).

Every string that came from outside (server replies, DNS records, payload fields, API answers)
passes through :func:`escape` before it reaches a text form, so a server cannot move the cursor,
retitle the terminal or clear the screen; JSON keeps the exact text. Given a ``width``, prose wraps
at word boundaries with its indent kept, and a DNS record stays whole on a line of its own, so that it
can be copied as it is.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

import click

from inboxcheck._models import CheckResult, Finding, Report, Severity, Status, Verdict

if TYPE_CHECKING:
    from pydantic import JsonValue

    from inboxcheck._diagnose import Diagnosis
    from inboxcheck._errors import AccountError
    from inboxcheck._presets import Preset
    from inboxcheck.discovery.model import Discovery
    from inboxcheck.platform.connect import ConnectResult

__all__ = [
    "Format",
    "JsonRenderer",
    "Renderer",
    "TextRenderer",
    "describe_preset",
    "escape",
    "escape_lines",
    "render_connect",
    "render_diagnosis",
    "render_discovery",
    "render_input_error",
    "renderer_for",
    "wrap",
]

# C0 and C1 controls and DEL (ESC sequences, CR, backspace, BEL); every Unicode format character
# (category Cf: zero-width spaces and joiners, bidirectional marks, overrides and isolates, the BOM,
# tag characters) and the line and paragraph separators, which hide or reorder text on a terminal;
# and lone surrogates, which are bytes that were not UTF-8 (written as the byte, \xfc).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}
# A record to publish, at the end of a fix ("Publish a TXT record at example.com: v=spf1 ... ~all").
_TRAILING_RECORD: Final = re.compile(r"(?<=: )v=(?:spf1|DMARC1|DKIM1|STSv1|TLSRPTv1|BIMI1)\b.*$")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` safe for a terminal: every control or invisible reordering character shown as a
    visible escape (``\\x1b``, ``\\r``, ``\\u202e``), everything else unchanged."""
    return _UNSAFE.sub(_escaped, text)


def escape_lines(text: str) -> str:
    """:func:`escape` for a message whose line breaks are the tool's own: each line escaped apart."""
    return "\n".join(escape(line) for line in text.split("\n"))


def wrap(
    text: str,
    *,
    width: int | None,
    indent: str = "",
    hang: str | None = None,
    records: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> list[str]:
    """``text`` (already escaped) as lines of at most ``width`` columns, broken only between words.

    The first line starts with ``indent``, the others with ``hang`` (default: ``indent``). Each of
    ``records`` found in the text goes on a line of its own after ``hang``, never broken, however long
    it is: a DNS record is copied from the terminal as it stands. Each of ``keep`` stays unbroken
    where it is (a record quoted inside other evidence). ``width=None`` wraps nothing.
    """
    hang = indent if hang is None else hang
    kept = [k for k in keep if " " in k.strip() and k in text]
    if kept and width is not None:
        # Escaped text holds no NUL: it stands for the spaces that must not break while wrapping.
        for item in sorted(kept, key=len, reverse=True):
            text = text.replace(item, item.replace(" ", "\x00"))
        return [line.replace("\x00", " ") for line in wrap(text, width=width, indent=indent, hang=hang)]
    lines: list[str] = []
    for is_record, piece in _pieces(text, records):
        first = indent if not lines else hang
        if is_record:
            lines.append(first + piece)
            continue
        if lines:
            piece = piece.lstrip(" ;")
            if not piece:
                continue
        if width is None:
            lines.append(first + piece)
            continue
        lines.extend(
            textwrap.wrap(
                piece,
                width=width,
                initial_indent=first,
                subsequent_indent=hang,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [first.rstrip()]
        )
    return lines or [indent.rstrip()]


def _pieces(text: str, records: Iterable[str]) -> list[tuple[bool, str]]:
    """``text`` cut into prose and the records it contains (only records with a space could break)."""
    wanted = sorted({r for r in records if " " in r.strip() and r in text}, key=len, reverse=True)
    if not wanted:
        return [(False, text)]
    pattern = re.compile("|".join(re.escape(r) for r in wanted))
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append((False, text[position : match.start()].rstrip()))
        pieces.append((True, match.group()))
        position = match.end()
    if position < len(text):
        pieces.append((False, text[position:]))
    return [(is_record, piece) for is_record, piece in pieces if piece.strip()]


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


class Renderer(Protocol):
    def render(self, report: Report) -> str: ...


class JsonRenderer:
    """The report as JSON, matching ``report.schema.json``."""

    def __init__(self, *, indent: int | None = 2) -> None:
        self.indent = indent

    def render(self, report: Report) -> str:
        return report.model_dump_json(indent=self.indent)


_MARKS: Final = {
    Status.PASS: ("✔", "PASS", "green"),
    Status.WARN: ("!", "WARN", "yellow"),
    Status.FAIL: ("✘", "FAIL", "red"),
    Status.ERROR: ("?", "ERR ", "magenta"),
    Status.SKIPPED: ("-", "SKIP", "bright_black"),
}
_SEVERITY_STATUS: Final = {
    Severity.INFO: Status.PASS,
    Severity.WARN: Status.WARN,
    Severity.FAIL: Status.FAIL,
    Severity.ERROR: Status.ERROR,
}
_VERDICT_COLOUR: Final = {
    Verdict.PASS: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "red",
    Verdict.ERROR: "magenta",
}
_EVIDENCE_WIDTH: Final = 160
# Evidence that holds DNS records: shown whole, one record to a line.
_RECORD_KEYS: Final = ("record", "records")
# Evidence a person needs to see without -v: what the server or the DNS actually said. The rest
# (fields and values already named in the message) shows with -v and is always in the JSON.
_PROOF_KEYS: Final = frozenset(
    {
        "reply",
        "record",
        "records",
        "lookup",
        "detail",
        "offered",
        "selectors_tried",
        "error",
        "addresses",
        "certificate",
        "not_after",
        "tls_version",
    }
)


class TextRenderer:
    """A report a person reads top to bottom: what failed, why, and what to do.

    ``width`` is the terminal's width: prose wraps to it at word boundaries; ``None`` wraps nothing.
    """

    def __init__(
        self, *, colour: bool = False, unicode: bool = True, verbose: bool = False, width: int | None = None
    ) -> None:
        self.colour = colour
        self.unicode = unicode
        self.verbose = verbose
        self.width = width

    def _style(self, text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if self.colour else text  # type: ignore[arg-type]

    def _plain_mark(self, status: Status) -> str:
        symbol, word, _ = _MARKS[status]
        return symbol if self.unicode else word

    def _mark(self, status: Status) -> str:
        return self._style(self._plain_mark(status), fg=_MARKS[status][2], bold=True)

    def _wrap(
        self, text: str, indent: str, hang: str | None = None, records: Iterable[str] = ()
    ) -> list[str]:
        return wrap(text, width=self.width, indent=indent, hang=hang, records=records)

    def render(self, report: Report) -> str:
        lines = [*self._header(report), ""]
        width = max((len(escape(check.title)) for check in report.checks), default=0)
        for check in report.checks:
            lines.extend(self._check(check, width))
        lines.append("")
        lines.extend(self._footer(report))
        return "\n".join(lines) + "\n"

    def _header(self, report: Report) -> list[str]:
        account = report.account
        preset = (
            f"{report.preset.name} (matched by {report.preset.matched_by})" if report.preset else "no preset"
        )
        text = escape(f"inboxcheck {report.tool_version} · {account.email_address} · {preset}")
        return [self._style(line, bold=True) for line in self._wrap(text, "")]

    def _check(self, check: CheckResult, width: int) -> list[str]:
        summary = escape(check.summary)
        if check.status is Status.SKIPPED:
            summary = f"skipped: {summary}"
        plain = self._plain_mark(check.status)
        title = escape(check.title).ljust(width)
        timing = f"  ({check.duration_ms:.0f} ms)" if self.verbose else ""
        lines = self._wrap(f"{plain} {title}  {summary}{timing}", "  ", " " * (width + 5 + len(plain)))
        # The mark and the timing are single unbreakable tokens: styled after wrapping, so that the
        # colour codes never count towards the width.
        lines[0] = "  " + self._mark(check.status) + lines[0][2 + len(plain) :]
        if timing and lines[-1].endswith(timing.strip()):
            lines[-1] = lines[-1][: -len(timing.strip())] + self._style(timing.strip(), dim=True)
        for finding in check.findings:
            if finding.severity is Severity.INFO and not self.verbose:
                continue
            lines.extend(self._finding(finding))
        return lines

    def _finding(self, finding: Finding) -> list[str]:
        status = _SEVERITY_STATUS[finding.severity]
        plain = self._plain_mark(status)
        records = _records_in(finding)
        lines = self._wrap(
            f"{plain} {escape(finding.message)} [{finding.code}]", "      ", "        ", records
        )
        lines[0] = "      " + self._mark(status) + lines[0][6 + len(plain) :]
        tail = f"[{finding.code}]"
        if lines[-1].endswith(tail):
            lines[-1] = lines[-1][: -len(tail)] + "[" + self._style(finding.code, dim=True) + "]"
        if finding.fix:
            lines.extend(self._wrap(f"fix: {escape(finding.fix)}", "        ", "          ", records))
        for key, value in finding.evidence.items():
            if not self.verbose and key not in _PROOF_KEYS:
                continue
            lines.extend(self._style(line, dim=True) for line in self._evidence(key, value, finding))
        return lines

    def _evidence(self, key: str, value: object, finding: Finding) -> list[str]:
        if key in _RECORD_KEYS and isinstance(value, str | list):
            # Records as found in the DNS or to publish: one to a line, whole, so they can be copied.
            items = [value] if isinstance(value, str) else value
            fix = escape(finding.fix or "")
            # A record the fix already prints whole is not printed twice.
            records = [text for text in (escape(_record_text(item)) for item in items) if text not in fix]
            if not records:
                return []
            head = f"        {key}: "
            if len(records) == 1 and (self.width is None or len(head) + len(records[0]) <= self.width):
                return [head + records[0]]
            return [head.rstrip(), *(f"          {item}" for item in records)]
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown = escape(" ".join(shown.split()))
        if len(shown) > _EVIDENCE_WIDTH:
            shown = shown[: _EVIDENCE_WIDTH - 3] + "..."
        return wrap(
            f"{key}: {shown}",
            width=self.width,
            indent="        ",
            hang="          ",
            keep=_records_in(finding),
        )

    def _footer(self, report: Report) -> list[str]:
        limit = report.recommended_daily_limit
        low, high = limit.stage_range
        lines = [
            self.verdict_line(report),
            *self._wrap(
                f"Recommended daily limit: {limit.value} a day "
                f"({limit.stage.value} mailbox, {low}-{high}"
                + (f", provider cap {limit.provider_cap}" if limit.provider_cap else "")
                + ")",
                "",
                "  ",
            ),
        ]
        # The first reason is the stage's guidance, already in the line above; the rest are what
        # lowered or capped it, which the daily-limit check's verdict rests on.
        for reason in limit.reasons[1:]:
            lines.extend(self._wrap(escape(reason), "  ", "    "))
        if self.verbose and limit.ramp:
            ramp = ", ".join(f"day {step.day}: {step.daily_limit}" for step in limit.ramp)
            lines.extend(self._wrap(f"warm-up: {ramp}", "  ", "    "))
        return lines

    def verdict_line(self, report: Report) -> str:
        """The one line ``--quiet`` prints: the verdict, the counts per status and the time taken."""
        order = (Status.FAIL, Status.ERROR, Status.WARN, Status.PASS, Status.SKIPPED)
        names = {
            Status.FAIL: "failed",
            Status.ERROR: "could not tell",
            Status.WARN: "warned",
            Status.PASS: "passed",
            Status.SKIPPED: "skipped",
        }
        counts = ", ".join(
            f"{report.counts[status]} {names[status]}" for status in order if report.counts.get(status)
        )
        verdict = self._style(report.verdict.value.upper(), fg=_VERDICT_COLOUR[report.verdict], bold=True)
        return f"Verdict: {verdict} ({counts or 'no checks ran'}) in {report.duration_ms / 1000:.1f} s"


def _record_text(item: object) -> str:
    if isinstance(item, dict) and "value" in item:
        return f"{item.get('type', '')} at {item.get('name', '')}: {item['value']}".strip()
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)


def _records_in(finding: Finding) -> list[str]:
    """The DNS records a finding names, escaped: those in its evidence and the one its fix ends with."""
    return _records_of(finding.evidence, finding.fix)


def _records_of(evidence: dict[str, JsonValue], fix: str | None) -> list[str]:
    found: list[str] = []
    for key in _RECORD_KEYS:
        value = evidence.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                found.append(escape(item))
            elif isinstance(item, dict) and str(item.get("value", "")).startswith("v="):
                # The value of a record to publish; a value in prose ("Turn on DKIM signing ...") is not.
                found.append(escape(str(item["value"])))
    if fix:
        match = _TRAILING_RECORD.search(escape(fix))
        # A fix naming several records (already found in the evidence) ends with the last of them.
        if match and not any(record in match.group() for record in found):
            found.append(match.group())
    return found


def renderer_for(
    fmt: Format,
    *,
    colour: bool = False,
    unicode: bool = True,
    verbose: bool = False,
    width: int | None = None,
) -> Renderer:
    if fmt is Format.JSON:
        return JsonRenderer()
    return TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width)


INPUT_INVALID: Final = "input.invalid"


def render_input_error(error: AccountError) -> str:
    """An unusable account as the JSON document ``--format json`` prints instead of a report: one
    ``input.invalid`` finding per field problem, so that a tool never has to parse the prose."""
    from inboxcheck._models import finding

    findings = [
        finding(
            INPUT_INVALID,
            Severity.FAIL,
            str(problem),
            fix=f"Correct {problem.field} in the account payload (the README's field table lists "
            "what the platform accepts).",
            field=problem.field,
            problem=problem.problem,
        )
        for problem in error.problems
    ] or [
        finding(
            INPUT_INVALID,
            Severity.FAIL,
            error.message or str(error),
            fix="Give a JSON object in the platform's create-inbox format.",
            field=None,
        )
    ]
    document = {
        "kind": "input_error",
        "verdict": "invalid",
        "exit_code": error.exit_code,
        "source": error.source,
        "message": error.message or "the account is not valid",
        "findings": [item.model_dump(mode="json") for item in findings],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def render_connect(
    result: ConnectResult,
    *,
    colour: bool,
    unicode: bool,
    verbose: bool,
    width: int | None = None,
    quiet: bool = False,
) -> str:
    """The report (``quiet``: its verdict line), the gate's decision and what the create call did."""
    renderer = TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width)
    text = renderer.verdict_line(result.report) if quiet else renderer.render(result.report)

    def style(value: str, colour_name: str) -> str:
        return click.style(value, fg=colour_name, bold=True) if colour else value

    def add(line: str, hang: str = "  ") -> None:
        lines.extend(wrap(line, width=width, hang=hang))

    lines = [text.rstrip("\n")] if quiet else [text.rstrip("\n"), ""]
    if result.gate == "blocked":
        blockers = ", ".join(
            f"{name} ({result.report.check(name).status.value})" for name in result.blocked_by
        )
        add(f"Gate: {style('BLOCKED', 'red')} by {blockers}: nothing was sent to the platform.")
        if any(result.report.check(n).status.value == "warn" for n in result.blocked_by):
            lines.append("  (--strict makes warnings block; fix them or run without --strict)")
        return "\n".join(lines) + "\n"
    lines.append(f"Gate: {style('PASSED', 'green')}: no check failed.")
    add(f"Daily limit: {result.daily_limit.value} ({escape(result.daily_limit.note)})")
    if result.create is None:
        add(f"Dry run: would POST {escape(result.url)} with (passwords masked):")
        # json.dumps writes every control character as an escape: the payload is shown exactly.
        lines.append(json.dumps(result.payload, indent=2))
        return "\n".join(lines) + "\n"
    outcome = result.create
    if outcome.ok and outcome.inbox is not None:
        inbox = outcome.inbox
        created = style(escape(inbox.id), "green")
        add(
            f"Created inbox {created} for {escape(inbox.email_address)}: "
            f"status {escape(inbox.status.value)}, created_at {inbox.created_at.isoformat()}, "
            f"daily_limit {inbox.daily_limit}"
        )
        return "\n".join(lines) + "\n"
    finding = outcome.finding
    add(
        f"Create call: {style(outcome.outcome.value.upper(), 'red')}: {escape(finding.message)} "
        f"[{finding.code}]"
    )
    if finding.fix:
        lines.extend(wrap(f"fix: {escape(finding.fix)}", width=width, indent="  ", hang="    "))
    for key, value in finding.evidence.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        lines.extend(wrap(f"{key}: {escape(shown)}", width=width, indent="  ", hang="    "))
    return "\n".join(lines) + "\n"


def render_diagnosis(
    result: Diagnosis, *, colour: bool, unicode: bool, verbose: bool, width: int | None = None
) -> str:
    """The report, then the probable causes, notices, alternates tried and a suggested change."""
    text = TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width).render(result.report)

    def bold(value: str) -> str:
        return click.style(value, bold=True) if colour else value

    def add(line: str, indent: str, hang: str, records: Iterable[str] = ()) -> None:
        lines.extend(wrap(line, width=width, indent=indent, hang=hang, records=records))

    lines = [text.rstrip("\n"), ""]
    if result.causes:
        lines.append(bold("Probable causes, most likely first:"))
        for cause in result.causes[:10]:
            records = _records_of(cause.evidence, cause.fix)
            number = f"{cause.rank}. "
            add(f"{number}{escape(cause.message)} [{cause.code}]", "  ", "  " + " " * len(number), records)
            if cause.fix:
                add(f"fix: {escape(cause.fix)}", "     ", "       ", records)
            reply = cause.evidence.get("reply")
            if reply:
                shown = reply if isinstance(reply, str) else json.dumps(reply)
                add(f"server said: {escape(' '.join(shown.split()))}", "     ", "       ")
        if len(result.causes) > 10:
            lines.append(f"  ... and {len(result.causes) - 10} more (see --format json)")
    else:
        lines.append(bold("No cause found: every check passed."))
    if result.notices:
        lines.append("")
        lines.append(bold("Also worth knowing:"))
        for notice in result.notices:
            records = _records_in(notice)
            add(f"- {escape(notice.message)} [{notice.code}]", "  ", "    ", records)
            if notice.fix:
                add(f"fix: {escape(notice.fix)}", "    ", "      ", records)
    if result.alternatives:
        lines.append("")
        lines.append(bold("Alternatives tried:"))
        for alt in result.alternatives:
            codes = f" ({', '.join(alt.codes)})" if alt.codes and alt.result != "works" else ""
            add(
                f"{alt.result:>14}  {alt.protocol.upper()} {escape(alt.host)}:{alt.port} {alt.tls.value}"
                f"  from {escape(alt.source)}{codes}",
                "  ",
                " " * 18,
            )
    if result.suggested_changes:
        lines.append("")
        changes = ", ".join(f"{k} = {json.dumps(v)}" for k, v in result.suggested_changes.items())
        lines.extend(
            bold(line)
            for line in wrap(f"Suggested change to the account payload: {changes}", width=width, hang="  ")
        )
    return "\n".join(lines) + "\n"


def render_discovery(
    result: Discovery, *, colour: bool, unicode: bool, verbose: bool, width: int | None = None
) -> str:
    """The chosen settings and where each came from, every candidate and what it did, the sources
    asked, then the findings. ``width`` wraps prose as in the report."""
    from inboxcheck.discovery.model import MailProtocol, ProbeResult

    renderer = TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width)

    def bold(value: str) -> str:
        return click.style(value, bold=True) if colour else value

    preset = f" · preset {result.preset}" if result.preset else ""
    lines = [bold(f"inboxcheck {result.tool_version} · discover {result.email_address}{preset}"), ""]
    if result.account is not None:
        lines.append(bold("Settings:"))
        column = max(len(key) for key in result.account)
        for key, value in result.account.items():
            source = result.filled.get(key)
            text = escape(value if isinstance(value, str) else json.dumps(value))
            line = f"  {key.ljust(column)}  {text}" + (f"   <- {escape(source)}" if source else "")
            lines.extend(wrap(line, width=width, hang=" " * (column + 7)))
    else:
        lines.append(bold("Settings: none found that work."))
    lines.append("")
    lines.append(bold("Candidates tried (best first):"))
    works = {ProbeResult.LOGGED_IN, ProbeResult.AUTH_OFFERED}
    for protocol in MailProtocol:
        for c in (c for c in result.candidates if c.protocol is protocol):
            if c.result in works:
                status = Status.PASS
            elif c.result.could_not_tell:
                status = Status.ERROR
            elif c.result is ProbeResult.NOT_EXPRESSIBLE:
                status = Status.SKIPPED
            else:
                status = Status.FAIL
            chosen = " [chosen]" if c.chosen else ""
            password = {"sent": ", password sent", "withheld": ", password withheld"}.get(
                c.credential.value, ""
            )
            plain = renderer._plain_mark(status)
            row = wrap(
                f"{plain} {protocol.value.upper():4} {escape(c.where)}  {c.result.value}{password}{chosen}  "
                f"from {escape(c.sources[0] if c.sources else '?')}",
                width=width,
                indent="  ",
                hang="      ",
            )
            # The mark is coloured after wrapping, so colour codes never count towards the width.
            row[0] = "  " + renderer._mark(status) + row[0][2 + len(plain) :]
            lines.extend(row)
            if c.reason:
                lines.extend(wrap(escape(c.reason), width=width, indent="        "))
    if verbose and result.lookups:
        lines.append("")
        lines.append(bold("Sources asked:"))
        for lookup in result.lookups:
            lines.extend(
                wrap(
                    f"{lookup.source.value:10} {escape(lookup.target)}: {lookup.outcome}"
                    + (f" ({escape(lookup.detail)})" if lookup.detail else ""),
                    width=width,
                    indent="  ",
                    hang="      ",
                )
            )
    shown = [f for f in result.findings if verbose or f.severity is not Severity.INFO]
    if shown:
        lines.append("")
        lines.append(bold("Findings:"))
        for item in shown:
            clean = item.model_copy(
                update={
                    "message": escape(item.message),
                    "fix": escape(item.fix) if item.fix else None,
                    "evidence": {k: escape(v) if isinstance(v, str) else v for k, v in item.evidence.items()},
                }
            )
            lines.extend(renderer._finding(clean))
    verdict = click.style(result.verdict.value.upper(), fg=_VERDICT_COLOUR[result.verdict], bold=True)
    lines.append("")
    lines.append(
        f"Verdict: {verdict if colour else result.verdict.value.upper()} in {result.duration_ms / 1000:.1f} s"
    )
    return "\n".join(lines) + "\n"


def describe_preset(preset: Preset, *, width: int | None = None) -> str:
    """One preset in full, for ``inboxcheck presets show``."""
    lines: list[str] = []

    def add(line: str, indent: str = "  ", hang: str = "    ") -> None:
        lines.extend(wrap(escape(line), width=width, indent=indent, hang=hang))

    add(f"{preset.name} [{preset.id}]  inbox_type {preset.inbox_type.value}", "", "  ")
    if preset.unverified:
        add("(some facts come from a single weak source: unverified)")
    if preset.status:
        add(f"status: {preset.status}")
    if preset.summary:
        add(preset.summary)
    for label, service in (("SMTP", preset.smtp), ("IMAP", preset.imap)):
        add(f"{label} (username: {service.username.value})")
        for endpoint in service.endpoints:
            flag = "  preferred" if endpoint.preferred else ""
            note = f"  ({endpoint.note})" if endpoint.note else ""
            add(f"{endpoint.host}:{endpoint.port} {endpoint.tls.value}{flag}{note}", "    ", "      ")
        if service.host_patterns:
            add(f"also: {', '.join(service.host_patterns)}", "    ", "      ")
    if preset.mx_patterns:
        add(f"MX: {', '.join(preset.mx_patterns)}")
    if preset.address_domains:
        add(f"addresses: {', '.join(preset.address_domains)}")
    auth = preset.auth
    add(
        f"login: app password {'required' if auth.app_password_required else 'not required'}; "
        f"SMTP basic auth {auth.smtp_basic_auth.value}; IMAP basic auth {auth.imap_basic_auth.value}"
        + ("; OAuth2 only" if auth.oauth_only else "")
    )
    dns = preset.dns
    if dns.spf_includes:
        add(f"SPF include: {', '.join(dns.spf_includes)}")
    if dns.dkim_selectors:
        known = "documented" if dns.dkim_selectors_known else "seen in the wild"
        add(f"DKIM selectors ({known}): {', '.join(dns.dkim_selectors)}")
    limits = preset.limits
    if limits.hard_daily_cap or limits.platform_max:
        add(f"daily cap: provider {limits.hard_daily_cap or '-'}, platform {limits.platform_max or '-'}")
    for note in [*auth.notes, *preset.notes]:
        add(f"note: {note}")
    for source in preset.sources:
        mark = "" if source.verified else " (unverified)"
        add(f"source for {source.fact}: {source.source}{mark}")
    return "\n".join(lines)
