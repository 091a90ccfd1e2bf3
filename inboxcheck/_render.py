"""Output formats for a report: text for people, JSON for programs. Both go to standard output.

The text form shows one line per check with a mark, then each finding with its fix beneath, then a
summary line. Colour is used only when asked for (the CLI asks on a terminal without ``NO_COLOR``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

import click

from inboxcheck._models import CheckResult, Finding, Report, Severity, Status, Verdict

if TYPE_CHECKING:
    from inboxcheck._diagnose import Diagnosis
    from inboxcheck._presets import Preset
    from inboxcheck.platform.connect import ConnectResult

__all__ = [
    "Format",
    "JsonRenderer",
    "Renderer",
    "TextRenderer",
    "describe_preset",
    "render_connect",
    "render_diagnosis",
    "renderer_for",
]


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
        lines = [
            f"Verdict: {verdict} ({counts or 'no checks ran'}) in {report.duration_ms / 1000:.1f} s",
            f"Recommended daily limit: {limit.value} a day "
            f"({limit.stage.value} mailbox, {low}-{high}"
            + (f", provider cap {limit.provider_cap}" if limit.provider_cap else "")
            + ")",
        ]
        # The first reason is the stage's guidance, already in the line above; the rest are what
        # lowered or capped it, which the daily-limit check's verdict rests on.
        lines.extend(f"  {reason}" for reason in limit.reasons[1:])
        if self.verbose and limit.ramp:
            ramp = ", ".join(f"day {step.day}: {step.daily_limit}" for step in limit.ramp)
            lines.append(f"  warm-up: {ramp}")
        return lines


def renderer_for(
    fmt: Format, *, colour: bool = False, unicode: bool = True, verbose: bool = False
) -> Renderer:
    if fmt is Format.JSON:
        return JsonRenderer()
    return TextRenderer(colour=colour, unicode=unicode, verbose=verbose)


def render_connect(result: ConnectResult, *, colour: bool, unicode: bool, verbose: bool) -> str:
    """The report, the gate's decision and what the create call did."""
    text = TextRenderer(colour=colour, unicode=unicode, verbose=verbose).render(result.report)

    def style(value: str, colour_name: str) -> str:
        return click.style(value, fg=colour_name, bold=True) if colour else value

    lines = [text.rstrip("\n"), ""]
    if result.gate == "blocked":
        blockers = ", ".join(
            f"{name} ({result.report.check(name).status.value})" for name in result.blocked_by
        )
        lines.append(f"Gate: {style('BLOCKED', 'red')} by {blockers}: nothing was sent to the platform.")
        if any(result.report.check(n).status.value == "warn" for n in result.blocked_by):
            lines.append("  (--strict makes warnings block; fix them or run without --strict)")
        return "\n".join(lines) + "\n"
    lines.append(f"Gate: {style('PASSED', 'green')}: no check failed.")
    lines.append(f"Daily limit: {result.daily_limit.value} ({result.daily_limit.note})")
    if result.create is None:
        lines.append(f"Dry run: would POST {result.url} with (passwords masked):")
        lines.append(json.dumps(result.payload, indent=2))
        return "\n".join(lines) + "\n"
    outcome = result.create
    if outcome.ok and outcome.inbox is not None:
        inbox = outcome.inbox
        lines.append(
            f"Created inbox {style(inbox.id, 'green')} for {inbox.email_address}: "
            f"status {inbox.status.value}, created_at {inbox.created_at.isoformat()}, "
            f"daily_limit {inbox.daily_limit}"
        )
        return "\n".join(lines) + "\n"
    finding = outcome.finding
    lines.append(
        f"Create call: {style(outcome.outcome.value.upper(), 'red')}: {finding.message} [{finding.code}]"
    )
    if finding.fix:
        lines.append(f"  fix: {finding.fix}")
    for key, value in finding.evidence.items():
        lines.append(f"  {key}: {value if isinstance(value, str) else json.dumps(value)}")
    return "\n".join(lines) + "\n"


def render_diagnosis(result: Diagnosis, *, colour: bool, unicode: bool, verbose: bool) -> str:
    """The report, then the probable causes, notices, alternates tried and a suggested change."""
    text = TextRenderer(colour=colour, unicode=unicode, verbose=verbose).render(result.report)

    def bold(value: str) -> str:
        return click.style(value, bold=True) if colour else value

    lines = [text.rstrip("\n"), ""]
    if result.causes:
        lines.append(bold("Probable causes, most likely first:"))
        for cause in result.causes[:10]:
            lines.append(f"  {cause.rank}. {cause.message} [{cause.code}]")
            if cause.fix:
                lines.append(f"     fix: {cause.fix}")
            reply = cause.evidence.get("reply")
            if reply:
                lines.append(f"     server said: {reply}")
        if len(result.causes) > 10:
            lines.append(f"  ... and {len(result.causes) - 10} more (see --format json)")
    else:
        lines.append(bold("No cause found: every check passed."))
    if result.notices:
        lines.append("")
        lines.append(bold("Also worth knowing:"))
        for notice in result.notices:
            lines.append(f"  - {notice.message} [{notice.code}]")
            if notice.fix:
                lines.append(f"    fix: {notice.fix}")
    if result.alternatives:
        lines.append("")
        lines.append(bold("Alternatives tried:"))
        for alt in result.alternatives:
            codes = f" ({', '.join(alt.codes)})" if alt.codes and alt.result != "works" else ""
            lines.append(
                f"  {alt.result:>14}  {alt.protocol.upper()} {alt.host}:{alt.port} {alt.tls.value}"
                f"  from {alt.source}{codes}"
            )
    if result.suggested_changes:
        lines.append("")
        changes = ", ".join(f"{k} = {json.dumps(v)}" for k, v in result.suggested_changes.items())
        lines.append(bold(f"Suggested change to the account payload: {changes}"))
    return "\n".join(lines) + "\n"


def describe_preset(preset: Preset) -> str:
    """One preset in full, for ``inboxcheck presets show``."""
    lines = [f"{preset.name} [{preset.id}]  inbox_type {preset.inbox_type.value}"]
    if preset.unverified:
        lines.append("  (some facts come from a single weak source: unverified)")
    if preset.status:
        lines.append(f"  status: {preset.status}")
    if preset.summary:
        lines.append(f"  {preset.summary}")
    for label, service in (("SMTP", preset.smtp), ("IMAP", preset.imap)):
        lines.append(f"  {label} (username: {service.username.value})")
        for endpoint in service.endpoints:
            flag = "  preferred" if endpoint.preferred else ""
            note = f"  ({endpoint.note})" if endpoint.note else ""
            lines.append(f"    {endpoint.host}:{endpoint.port} {endpoint.tls.value}{flag}{note}")
        if service.host_patterns:
            lines.append(f"    also: {', '.join(service.host_patterns)}")
    if preset.mx_patterns:
        lines.append(f"  MX: {', '.join(preset.mx_patterns)}")
    if preset.address_domains:
        lines.append(f"  addresses: {', '.join(preset.address_domains)}")
    auth = preset.auth
    lines.append(
        f"  login: app password {'required' if auth.app_password_required else 'not required'}; "
        f"SMTP basic auth {auth.smtp_basic_auth.value}; IMAP basic auth {auth.imap_basic_auth.value}"
        + ("; OAuth2 only" if auth.oauth_only else "")
    )
    dns = preset.dns
    if dns.spf_includes:
        lines.append(f"  SPF include: {', '.join(dns.spf_includes)}")
    if dns.dkim_selectors:
        known = "documented" if dns.dkim_selectors_known else "seen in the wild"
        lines.append(f"  DKIM selectors ({known}): {', '.join(dns.dkim_selectors)}")
    limits = preset.limits
    if limits.hard_daily_cap or limits.platform_max:
        lines.append(
            f"  daily cap: provider {limits.hard_daily_cap or '-'}, platform {limits.platform_max or '-'}"
        )
    for note in [*auth.notes, *preset.notes]:
        lines.append(f"  note: {note}")
    for source in preset.sources:
        mark = "" if source.verified else " (unverified)"
        lines.append(f"  source for {source.fact}: {source.source}{mark}")
    return "\n".join(lines)
