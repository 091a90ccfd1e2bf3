"""The check report's forms: text for people, JSON for programs (check, connect and diagnose print it).

The text form shows one line per check with a mark, then each finding with its fix beneath, then a
summary line. Colour is used only when asked for (the CLI asks on a terminal without ``NO_COLOR``).
Text from outside is escaped and wrapped by :mod:`inboxcheck.cli._terminal`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

import click

from inboxcheck._models import CheckResult, Finding, Report, Severity, Status, Verdict
from inboxcheck.cli._terminal import escape, wrap

if TYPE_CHECKING:
    from pydantic import JsonValue

    from inboxcheck._errors import AccountError

__all__ = [
    "Format",
    "JsonRenderer",
    "Renderer",
    "TextRenderer",
    "render_input_error",
    "renderer_for",
]

# A record to publish, at the end of a fix ("Publish a TXT record at example.com: v=spf1 ... ~all").
_TRAILING_RECORD: Final = re.compile(r"(?<=: )v=(?:spf1|DMARC1|DKIM1|STSv1|TLSRPTv1|BIMI1)\b.*$")


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
VERDICT_COLOUR: Final = {
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
        records = records_in(finding)
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
            keep=records_in(finding),
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
        for caveat in limit.caveats:
            lines.extend(self._wrap(f"note: {escape(caveat)}", "  ", "    "))
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
        verdict = self._style(report.verdict.value.upper(), fg=VERDICT_COLOUR[report.verdict], bold=True)
        return f"Verdict: {verdict} ({counts or 'no checks ran'}) in {report.duration_ms / 1000:.1f} s"


def _record_text(item: object) -> str:
    if isinstance(item, dict) and "value" in item:
        return f"{item.get('type', '')} at {item.get('name', '')}: {item['value']}".strip()
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)


def records_in(finding: Finding) -> list[str]:
    """The DNS records a finding names, escaped: those in its evidence and the one its fix ends with."""
    return records_of(finding.evidence, finding.fix)


def records_of(evidence: dict[str, JsonValue], fix: str | None) -> list[str]:
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


def render_input_error(error: AccountError) -> str:
    """An unusable account as the JSON document ``--format json`` prints instead of a report (see
    :func:`inboxcheck._input.input_error_document`)."""
    from inboxcheck._input import input_error_document

    return input_error_document(error).model_dump_json(indent=2)
