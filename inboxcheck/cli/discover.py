"""``inboxcheck discover``: find the SMTP and IMAP settings of an address and try them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from inboxcheck.cli._options import option
from inboxcheck.cli._terminal import Terminal, emit, escape, notice, run_async, wrap

if TYPE_CHECKING:
    from inboxcheck.discovery.model import Discovery


class DiscoveryOutput:
    """The discovery: settings, candidates, sources asked and findings; or JSON."""

    def text(self, result: Discovery, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        return render_discovery(
            result, colour=terminal.colour, unicode=terminal.unicode, verbose=verbose, width=terminal.width
        )

    def json(self, result: Discovery) -> str:
        return result.model_dump_json(indent=2) + "\n"


@click.command()
@click.argument("address", metavar="ADDRESS")
@option("format", help="Output format on stdout.")
@click.option(
    "--write",
    "write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the payload found (without passwords, mode 0600) to this file, for check and connect.",
)
@click.option("--force", is_flag=True, help="With --write: replace the file if it exists.")
@option("timeout")
@option("deadline", default=60.0, show_default=True, help="Seconds allowed for the whole discovery.")
@option("nameserver")
@option(
    "ca-file",
    help="Also trust the CA certificates in this PEM file (mail servers and autoconfig web servers).",
)
@option(
    "trust-host",
    help="Allow the password to go to this discovered host outside the address's domain (repeatable).",
)
@click.option("--no-probe", is_flag=True, help="Only gather the settings; connect to no mail server.")
@click.option(
    "--ask-password", is_flag=True, help="Ask for the password on the terminal (else from the environment)."
)
@option("autoconfig-port", help="Fetch autoconfig files from this HTTPS port instead of 443 (for test labs).")
@option("verbose", help="Show the sources asked and informational findings.")
def discover(
    address: str,
    fmt: str,
    write: Path | None,
    force: bool,
    timeout: float,
    deadline: float,
    nameservers: tuple[str, ...],
    ca_file: Path | None,
    trust_hosts: tuple[str, ...],
    no_probe: bool,
    ask_password: bool,
    autoconfig_port: int | None,
    verbose: bool,
) -> None:
    """Find the SMTP and IMAP settings of ADDRESS and try them.

    Asks, together: the provider presets (by the address's domain and its MX hosts), the domain's
    RFC 6186 service records, its autoconfig files (HTTPS only), then guesses. Each endpoint is
    probed without a password; with INBOXCHECK_SMTP_PASSWORD (and INBOXCHECK_IMAP_PASSWORD) set it
    is logged in to, but only on a preset's host or one under the address's domain or its MX host's
    domain (or a --trust-host). Exit 0: a working pair; 1: nothing works; 3: could not tell.
    """

    from inboxcheck._input import ENV_IMAP_PASSWORD, ENV_SMTP_PASSWORD
    from inboxcheck._options import parse_nameserver
    from inboxcheck._runner import build_options
    from inboxcheck.discovery.run import discover as run_discover
    from inboxcheck.discovery.write import refuse_existing, write_payload

    if write is not None and not force:
        refuse_existing(write)
    options = build_options(
        None,
        {
            "timeout": timeout,
            "deadline": deadline,
            "nameservers": tuple(parse_nameserver(n) for n in nameservers),
            "ca_file": ca_file,
        },
    )
    smtp_password = os.environ.get(ENV_SMTP_PASSWORD) or None
    imap_password = os.environ.get(ENV_IMAP_PASSWORD) or None
    if ask_password and not smtp_password:
        if not sys.stdin.isatty():
            raise click.UsageError("--ask-password needs a terminal; set INBOXCHECK_SMTP_PASSWORD instead")
        smtp_password = str(click.prompt(f"Password for {address}", hide_input=True, err=True)) or None
    if smtp_password or imap_password:
        notice("a password is sent only over verified TLS to a host it may go to")
    result = run_async(
        run_discover(
            address,
            smtp_password=smtp_password,
            imap_password=imap_password,
            options=options,
            trust_hosts=trust_hosts,
            autoconfig_port=autoconfig_port,
            probe=not no_probe,
        )
    )
    emit(DiscoveryOutput(), result, fmt=fmt, verbose=verbose)
    if write is not None:
        if result.account is None:
            notice(f"nothing written to {write}: no settings were found")
        else:
            write_payload(write, result.account, replace=force)
            notice(f"wrote the payload (no passwords) to {write}")
    sys.exit(result.exit_code)


def render_discovery(
    result: Discovery, *, colour: bool, unicode: bool, verbose: bool, width: int | None = None
) -> str:
    """The chosen settings and where each came from, every candidate and what it did, the sources
    asked, then the findings. ``width`` wraps prose as in the report."""
    from inboxcheck._models import Severity, Status
    from inboxcheck.cli._report import VERDICT_COLOUR, TextRenderer
    from inboxcheck.discovery.model import CredentialUse, MailProtocol, ProbeResult

    renderer = TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width)

    def bold(value: str) -> str:
        return click.style(value, bold=True) if colour else value

    preset = f" · preset {result.preset}" if result.preset else ""
    lines = [bold(f"inboxcheck {result.tool_version} · discover {result.email_address}{preset}"), ""]
    if result.account is not None:
        lines.append(bold("Settings:"))
        column = max(len(key) for key in result.account)
        for key, value in result.account.items():
            text = escape(value if isinstance(value, str) else json.dumps(value))
            lines.extend(wrap(f"  {key.ljust(column)}  {text}", width=width, hang=" " * (column + 4)))
        # Each source named once, with the fields it filled.
        by_source: dict[str, list[str]] = {}
        for key, source in result.filled.items():
            by_source.setdefault(source, []).append(key)
        for source, keys in by_source.items():
            lines.extend(wrap(f"  <- {escape(source)}: {', '.join(keys)}", width=width, hang="       "))
    else:
        lines.append(bold("Settings: none found that work."))
    probed = [c for c in result.candidates if c.result is not ProbeResult.NOT_PROBED]
    if probed and all(c.credential is CredentialUse.NOT_GIVEN for c in result.candidates):
        lines.append("")
        lines.extend(
            wrap(
                "No password was given: each endpoint was probed without logging in, so a working "
                "login is not proven (set INBOXCHECK_SMTP_PASSWORD, or --ask-password, to log in).",
                width=width,
            )
        )
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
    verdict = click.style(result.verdict.value.upper(), fg=VERDICT_COLOUR[result.verdict], bold=True)
    lines.append("")
    lines.append(
        f"Verdict: {verdict if colour else result.verdict.value.upper()} in {result.duration_ms / 1000:.1f} s"
    )
    return "\n".join(lines) + "\n"
