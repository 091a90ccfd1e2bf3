"""``inboxcheck presets`` (a table of the provider presets) and ``presets show ID`` (one in full)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from inboxcheck.cli._options import option
from inboxcheck.cli._terminal import ErrorGroup, Terminal, emit, escape, wrap

if TYPE_CHECKING:
    from inboxcheck._presets import Preset, Presets


class PresetTableOutput:
    """The presets as a table (id, name, inbox type, preferred SMTP and IMAP), or a JSON list."""

    def text(self, result: Presets, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        rows = []
        for preset in result:
            smtp, imap = preset.smtp.preferred(), preset.imap.preferred()
            rows.append(
                (
                    preset.id,
                    preset.name + (" (unverified)" if preset.unverified else ""),
                    preset.inbox_type.value,
                    f"{smtp.host}:{smtp.port}" if smtp else "-",
                    f"{imap.host}:{imap.port}" if imap else "-",
                )
            )
        header = ("ID", "NAME", "INBOX TYPE", "SMTP", "IMAP")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        return "".join(
            "  ".join(escape(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            + "\n"
            for row in [header, *rows]
        )

    def json(self, result: Presets) -> str:
        return json.dumps([p.model_dump(mode="json") for p in result], indent=2) + "\n"


class PresetOutput:
    """One preset in full, or as JSON."""

    def text(self, result: Preset, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        return describe_preset(result, width=terminal.width) + "\n"

    def json(self, result: Preset) -> str:
        return result.model_dump_json(indent=2) + "\n"


@click.group(cls=ErrorGroup, invoke_without_command=True)
@option("format")
@click.pass_context
def presets(ctx: click.Context, fmt: str) -> None:
    """List the provider presets (hosts, ports, TLS, DNS and policies per provider)."""
    if ctx.invoked_subcommand is not None:
        return
    from inboxcheck._presets import load_presets

    emit(PresetTableOutput(), load_presets(), fmt=fmt)


@presets.command("show")
@click.argument("preset_id", metavar="ID")
@option("format")
def presets_show(preset_id: str, fmt: str) -> None:
    """Print one preset in full."""
    from inboxcheck._presets import load_presets

    emit(PresetOutput(), load_presets().get(preset_id), fmt=fmt)


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
        consumer = (
            f" ({limits.consumer_daily_cap} for its own addresses)" if limits.consumer_daily_cap else ""
        )
        add(
            f"daily cap: provider {limits.hard_daily_cap or '-'}{consumer}, "
            f"platform {limits.platform_max or '-'}"
        )
    for note in [*auth.notes, *preset.notes]:
        add(f"note: {note}")
    for source in preset.sources:
        mark = "" if source.verified else " (unverified)"
        add(f"source for {source.fact}: {source.source}{mark}")
    if preset.checked is not None:
        checked = preset.checked
        read = "" if checked.page_read else " (page not re-read)"
        add(f"checked {checked.on.isoformat()} against {checked.against}: {checked.url}{read}")
    return "\n".join(lines)
