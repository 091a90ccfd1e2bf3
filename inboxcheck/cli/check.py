"""``inboxcheck check``: one account (a report), or a --batch of them (one line each, a summary)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from inboxcheck.cli._oauth import oauth_given, oauth_params
from inboxcheck.cli._options import (
    check_options,
    discovery_options,
    discovery_params,
    option,
    options_from,
    read_account,
)
from inboxcheck.cli._terminal import (
    Progress,
    Terminal,
    colour_wanted,
    debug_enabled,
    emit,
    notice,
    run_async,
    unicode_ok,
)

if TYPE_CHECKING:
    from inboxcheck._models import Report
    from inboxcheck._options import CheckOptions


class ReportOutput:
    """The check report: the text form (``quiet``: its verdict line) or the JSON document."""

    def text(self, result: Report, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        from inboxcheck.cli._report import TextRenderer

        renderer = TextRenderer(
            colour=terminal.colour, unicode=terminal.unicode, verbose=verbose, width=terminal.width
        )
        return renderer.verdict_line(result) + "\n" if quiet else renderer.render(result)

    def json(self, result: Report) -> str:
        from inboxcheck.cli._report import JsonRenderer

        return JsonRenderer().render(result)


@click.command()
@click.argument("account", metavar="ACCOUNT", required=False)
@check_options
@discovery_options
@click.option(
    "--batch",
    "batch",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Check every account in this JSONL or CSV file (the platform's field names); - for stdin.",
)
@option("output", help="With --batch: append each account's result to this JSONL file as it finishes.")
@option("resume", help="With --batch --output: skip the accounts already in the output.")
@click.option(
    "--retry-errors",
    is_flag=True,
    help="With --resume: check again the accounts whose result was 'could not tell'.",
)
@option("resend-test")
@option("concurrency", help="With --batch: accounts checked at once.")
@option("per-host", help="With --batch: accounts checked at once against one server host.")
def check(
    account: str | None,
    fmt: str,
    verbose: bool,
    quiet: bool,
    batch: Path | None,
    output: Path | None,
    resume: bool,
    retry_errors: bool,
    resend_test: bool,
    concurrency: int,
    per_host: int,
    **params: Any,
) -> None:
    """Check ACCOUNT (a JSON file in the platform's format, or - for stdin), or a --batch of them.

    Passwords may be left out of the file: they are then read from INBOXCHECK_SMTP_PASSWORD and
    INBOXCHECK_IMAP_PASSWORD (IMAP defaults to the SMTP password), or asked for on a terminal.
    """

    from inboxcheck._runner import run_checks

    if (account is None) == (batch is None):
        raise click.UsageError("give either ACCOUNT or --batch FILE")
    if batch is None and (output or resume):
        raise click.UsageError("--output and --resume go with --batch")
    if retry_errors and not resume:
        raise click.UsageError("--retry-errors goes with --resume")
    if resend_test and not (resume and params["send_test"]):
        raise click.UsageError("--resend-test goes with --batch --resume --send-test")
    if resume and output is None:
        raise click.UsageError("--resume needs --output: the output file is what a run resumes from")
    discovery = discovery_params(params)
    oauth = oauth_params(params)
    options = options_from(params)
    if batch is not None and oauth_given(oauth):
        raise click.UsageError("the --oauth-* options go with one ACCOUNT, not --batch")
    if batch is not None:
        _run_batch(
            batch,
            options,
            fmt=fmt,
            output=output,
            resume=resume,
            retry_errors=retry_errors,
            resend_test=resend_test,
            concurrency=concurrency,
            per_host=per_host,
            discovery=discovery,
            quiet=quiet,
        )
    assert account is not None
    parsed, leading = read_account(
        account,
        options,
        discovery,
        fmt=fmt,
        verbose=verbose,
        quiet=quiet,
        doing="checking {address}",
        oauth=oauth,
    )
    report = run_async(run_checks(parsed, options=options, leading=leading))
    if debug_enabled():
        for result in report.checks:
            if result.traceback:
                click.echo(f"--- traceback of {result.name} ---\n{result.traceback}", err=True)
    emit(ReportOutput(), report, fmt=fmt, verbose=verbose, quiet=quiet)
    sys.exit(report.exit_code)


def _run_batch(
    path: Path,
    options: CheckOptions,
    *,
    fmt: str,
    output: Path | None,
    resume: bool,
    retry_errors: bool,
    resend_test: bool,
    concurrency: int,
    per_host: int,
    discovery: dict[str, Any],
    quiet: bool,
) -> NoReturn:
    import time

    from inboxcheck._batch import BatchLine, count_accounts, run_batch
    from inboxcheck.cli._terminal import escape

    colour, mark_unicode = colour_wanted(sys.stdout), unicode_ok(sys.stdout)
    progress = Progress(count_accounts(path), clock=time.monotonic) if not quiet else None
    live = progress is not None and sys.stderr.isatty()
    marks = {"pass": "✔", "warn": "!", "fail": "✘", "error": "?", "invalid": "✘", "duplicate": "="}
    colours = {
        "pass": "green",
        "warn": "yellow",
        "fail": "red",
        "error": "magenta",
        "invalid": "red",
        "duplicate": "blue",
    }

    def on_start(resumed: int) -> None:
        if progress is not None:
            progress.start(resumed)

    def on_result(record: BatchLine) -> None:
        if progress is not None:
            progress.done += 1
        verdict = str(record.verdict)
        if fmt == "text" and not quiet:
            mark = marks[verdict] if mark_unicode else verdict.upper()
            mark = click.style(mark, fg=colours[verdict], bold=True) if colour else mark
            detail = record.error or ""
            if record.report is not None:
                codes = {f.code for f in record.report.findings() if f.severity.value in ("fail", "error")}
                detail = ", ".join(sorted(codes))
            if live:
                click.echo("\r\x1b[K", nl=False, err=True)
            click.echo(
                f"{mark} line {record.line} {escape(record.email_address or '-')} {verdict}"
                + (f": {escape(detail)}" if detail else "")
            )
        if live and progress is not None:
            click.echo(f"\r[{progress.describe()}]\x1b[K", nl=False, err=True)

    stream = sys.stdout if (fmt == "json" and output is None) else None
    summary = run_async(
        run_batch(
            path,
            options=options,
            output=output,
            stream=stream,
            resume=resume,
            retry_errors=retry_errors,
            resend_test=resend_test,
            concurrency=concurrency,
            per_host=per_host,
            on_result=on_result,
            discovery=discovery,
            on_start=on_start,
        )
    )
    if progress is not None:
        if live:
            click.echo("\r\x1b[K", nl=False, err=True)
        notice(progress.describe(final=True))
        for line in summary.describe().splitlines():
            notice(line)
    if stream is not None:
        # The summary closes the JSON lines on stdout (a document of its own kind: "summary"); with
        # --output the results, and so the summary, stay out of stdout.
        click.echo(summary.document().model_dump_json())
    elif quiet:
        # -q: the summary alone, on stdout, instead of a line per account.
        click.echo(summary.describe())
    sys.exit(summary.exit_code)
