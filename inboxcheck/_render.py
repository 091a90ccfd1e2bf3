"""Output formats for a report: text for people, JSON for programs. Both go to standard output.

The text form shows one line per check with a mark, then each finding with its fix beneath, then a
summary line. Colour is used only when asked for (the CLI asks on a terminal without ``NO_COLOR``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Final, Protocol

import click

from inboxcheck._models import CheckResult, Finding, Report, Severity, Status, Verdict

__all__ = ["Format", "JsonRenderer", "Renderer", "TextRenderer", "renderer_for"]


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
    """A report a person reads top to bottom: what failed, why, and what to do."""

    def __init__(self, *, colour: bool = False, unicode: bool = True, verbose: bool = False) -> None:
        self.colour = colour
        self.unicode = unicode
        self.verbose = verbose

    def _style(self, text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if self.colour else text  # type: ignore[arg-type]

    def _mark(self, status: Status) -> str:
        symbol, word, colour = _MARKS[status]
        return self._style(symbol if self.unicode else word, fg=colour, bold=True)

    def render(self, report: Report) -> str:
        lines = [self._header(report), ""]
        width = max((len(check.title) for check in report.checks), default=0)
        for check in report.checks:
            lines.extend(self._check(check, width))
        lines.append("")
        lines.extend(self._footer(report))
        return "\n".join(lines) + "\n"

    def _header(self, report: Report) -> str:
        account = report.account
        preset = (
            f"{report.preset.name} (matched by {report.preset.matched_by})" if report.preset else "no preset"
        )
        return self._style(
            f"inboxcheck {report.tool_version} · {account.email_address} · {preset}", bold=True
        )

    def _check(self, check: CheckResult, width: int) -> list[str]:
        summary = check.summary
        if check.status is Status.SKIPPED:
            summary = f"skipped: {summary}"
        head = f"  {self._mark(check.status)} {check.title.ljust(width)}  {summary}"
        if self.verbose:
            head += self._style(f"  ({check.duration_ms:.0f} ms)", dim=True)
        lines = [head]
        for finding in check.findings:
            if finding.severity is Severity.INFO and not self.verbose:
                continue
            lines.extend(self._finding(finding))
        return lines

    def _finding(self, finding: Finding) -> list[str]:
        mark = self._mark(_SEVERITY_STATUS[finding.severity])
        code = self._style(finding.code, dim=True)
        lines = [f"      {mark} {finding.message} [{code}]"]
        if finding.fix:
            lines.append(f"        fix: {finding.fix}")
        for key, value in finding.evidence.items():
            if not self.verbose and key not in _PROOF_KEYS:
                continue
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            shown = " ".join(shown.split())
            if len(shown) > _EVIDENCE_WIDTH:
                shown = shown[: _EVIDENCE_WIDTH - 3] + "..."
            lines.append(self._style(f"        {key}: {shown}", dim=True))
        return lines

    def _footer(self, report: Report) -> list[str]:
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
        limit = report.recommended_daily_limit
        low, high = limit.stage_range
        return [
            f"Verdict: {verdict} ({counts or 'no checks ran'}) in {report.duration_ms / 1000:.1f} s",
            f"Recommended daily limit: {limit.value} a day "
            f"({limit.stage.value} mailbox, {low}-{high}"
            + (f", provider cap {limit.provider_cap}" if limit.provider_cap else "")
            + ")",
        ]


def renderer_for(
    fmt: Format, *, colour: bool = False, unicode: bool = True, verbose: bool = False
) -> Renderer:
    if fmt is Format.JSON:
        return JsonRenderer()
    return TextRenderer(colour=colour, unicode=unicode, verbose=verbose)
