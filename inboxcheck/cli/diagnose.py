"""``inboxcheck diagnose``: the report, then the probable causes ranked, notices and alternates."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inboxcheck.cli._fleet_common import _db_option, _key_option
from inboxcheck.cli._oauth import oauth_params
from inboxcheck.cli._options import (
    check_options,
    discovery_options,
    discovery_params,
    options_from,
    read_account,
)
from inboxcheck.cli._terminal import Terminal, emit, escape, run_async, wrap

if TYPE_CHECKING:
    from inboxcheck._diagnose import Diagnosis


class DiagnosisOutput:
    """The diagnosis: the report and the causes (``quiet``: the verdict line only); or JSON."""

    def text(self, result: Diagnosis, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        if quiet:
            from inboxcheck.cli._report import TextRenderer

            return (
                TextRenderer(colour=terminal.colour, unicode=terminal.unicode).verdict_line(result.report)
                + "\n"
            )
        return render_diagnosis(
            result, colour=terminal.colour, unicode=terminal.unicode, verbose=verbose, width=terminal.width
        )

    def json(self, result: Diagnosis) -> str:
        return result.model_dump_json(indent=2) + "\n"


@click.command()
@click.argument("account", metavar="ACCOUNT")
@check_options
@discovery_options
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An earlier JSON report of this account, to show what changed since (DKIM key, MX).",
)
@click.option("--no-alternates", is_flag=True, help="Do not try the provider's other hosts and ports.")
@click.option(
    "--fleet",
    "from_fleet",
    is_flag=True,
    help="ACCOUNT is the address of an account in the fleet: its stored payload and passwords, and its "
    "last passing report as --previous (the same as `inboxcheck fleet diagnose ADDRESS`).",
)
@_db_option
@_key_option
def diagnose(
    account: str,
    fmt: str,
    verbose: bool,
    quiet: bool,
    previous: Path | None,
    no_alternates: bool,
    from_fleet: bool,
    db: str | None,
    key_file: Path | None,
    **params: Any,
) -> None:
    """Troubleshoot ACCOUNT: rank the probable causes and try the alternates that could work.

    Runs every check, ranks the causes (most likely first) with their evidence, adds what a preflight
    does not need (a certificate expiring soon, SPF headroom, a DKIM key that changed since
    --previous), and when a login fails for a reason another endpoint could avoid, tries the
    provider's other hosts, ports and TLS modes and names the payload fields to change.

    With --fleet, ACCOUNT is an address in the fleet (--db, INBOXCHECK_FLEET_DB): no password is
    asked for (they are decrypted with the fleet key, INBOXCHECK_FLEET_KEY or --key-file), and what
    changed since the account's last passing report is added to the causes.
    """

    from inboxcheck._diagnose import diagnose as run_diagnose
    from inboxcheck._models import Report

    ctx = click.get_current_context()
    if from_fleet:
        from inboxcheck.cli.fleet_reports import diagnose_from_fleet

        _refuse_with_fleet(ctx, account, ("previous", "trust_hosts", "autoconfig_port"))
        discovery_params(params)
        diagnose_from_fleet(
            account,
            db=db,
            key_file=key_file,
            no_alternates=no_alternates,
            fmt=fmt,
            verbose=verbose,
            quiet=quiet,
            params=params,
        )
    given = _given(ctx, ("db", "key_file"))
    if given:
        raise click.UsageError(f"{' and '.join(given)} {'goes' if len(given) == 1 else 'go'} with --fleet")

    earlier = None
    if previous is not None:
        try:
            earlier = Report.model_validate_json(previous.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.UsageError(
                f"--previous {previous}: not an inboxcheck JSON report ({type(exc).__name__})"
            ) from None
    discovery = discovery_params(params)
    oauth = oauth_params(params)
    options = options_from(params)
    parsed, leading = read_account(
        account,
        options,
        discovery,
        fmt=fmt,
        verbose=verbose,
        quiet=quiet,
        doing="diagnosing {address}",
        oauth=oauth,
    )
    result = run_async(
        run_diagnose(
            parsed, options=options, previous=earlier, try_alternates=not no_alternates, leading=leading
        )
    )
    emit(DiagnosisOutput(), result, fmt=fmt, verbose=verbose, quiet=quiet)
    sys.exit(result.exit_code)


def _given(ctx: click.Context, names: Iterable[str]) -> list[str]:
    """The options among ``names`` given on the command line (an environment variable does not count)."""
    from click.core import ParameterSource

    flags = {param.name: param.opts[0] for param in ctx.command.params}
    return [flags[name] for name in names if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]


def _refuse_with_fleet(ctx: click.Context, address: str, names: Iterable[str]) -> None:
    given = _given(ctx, names)
    if given:
        why = (
            " (with --fleet, the account's last passing report in the fleet is the previous one)"
            if "--previous" in given
            else ""
        )
        verb = "goes" if len(given) == 1 else "go"
        raise click.UsageError(f"{' and '.join(given)} {verb} with a payload ACCOUNT, not --fleet{why}")
    local, at, domain = address.strip().rpartition("@")
    if not (local and at and domain):
        raise click.UsageError(
            f"with --fleet, ACCOUNT is the address of an account in the fleet, not '{escape(address)}' "
            "(see `inboxcheck fleet list`)"
        )


def render_diagnosis(
    result: Diagnosis, *, colour: bool, unicode: bool, verbose: bool, width: int | None = None
) -> str:
    """The report, then the probable causes, notices, alternates tried and a suggested change."""
    from inboxcheck.cli._report import TextRenderer, records_in, records_of

    text = TextRenderer(colour=colour, unicode=unicode, verbose=verbose, width=width).render(result.report)

    def bold(value: str) -> str:
        return click.style(value, bold=True) if colour else value

    def add(line: str, indent: str, hang: str, records: Iterable[str] = ()) -> None:
        lines.extend(wrap(line, width=width, indent=indent, hang=hang, records=records))

    lines = [text.rstrip("\n"), ""]
    if result.causes:
        lines.append(bold("Probable causes, most likely first:"))
        for cause in result.causes[:10]:
            records = records_of(cause.evidence, cause.fix)
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
            records = records_in(notice)
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
