"""``inboxcheck connect``: check an account and, only if no check failed, create it on the platform."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

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
from inboxcheck.cli._terminal import Terminal, emit, escape, fail, notice, run_async, wrap

if TYPE_CHECKING:
    from inboxcheck._options import CheckOptions
    from inboxcheck.platform.batch import ConnectBatchSummary
    from inboxcheck.platform.connect import ConnectResult
    from inboxcheck.platform.key import ApiKey


class ConnectOutput:
    """The connect result: the report, the gate's decision and what the create call did; or JSON."""

    def text(self, result: ConnectResult, terminal: Terminal, *, verbose: bool, quiet: bool) -> str:
        return render_connect(
            result,
            colour=terminal.colour,
            unicode=terminal.unicode,
            verbose=verbose,
            width=terminal.width,
            quiet=quiet,
        )

    def json(self, result: ConnectResult) -> str:
        return result.model_dump_json(indent=2) + "\n"


@click.command()
@click.argument("account", metavar="ACCOUNT", required=False)
@check_options
@discovery_options
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check every account of this JSONL or CSV file, then create those that passed.",
)
@option("output", help="With --batch: the results log (JSONL).")
@option("resume", help="With --batch: continue the run logged in --output.")
@click.option("--bulk", is_flag=True, help="With --batch: create through the bulk endpoint, 100 a call.")
@click.option(
    "--retry-unknown",
    is_flag=True,
    help="With --resume: send again the creates whose outcome is unknown (same key); look first.",
)
@option("resend-test")
@option("concurrency")
@option("per-host")
@click.option(
    "--api-url",
    default=None,
    metavar="URL",
    help="The platform's base URL (default https://api.coldsend.io).",
)
@click.option(
    "--api-path",
    default=None,
    metavar="PATH",
    help="The create call's path (default /api/public/v1/sender-accounts).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file (default: the COLDSEND_API_KEY variable).",
)
@click.option(
    "--api-deadline",
    type=click.FloatRange(0, min_open=True),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Give up on a create call after this long, retries included (the outcome is then unknown).",
)
@click.option("--strict", is_flag=True, help="Let warnings block the create call too.")
@click.option(
    "--dry-run", is_flag=True, help="Print the request that would be sent (passwords masked); send nothing."
)
@click.option(
    "--apply-recommended-limit",
    is_flag=True,
    help="Lower daily_limit to the recommendation (never raises it).",
)
@click.option(
    "--idempotency-key",
    default=None,
    metavar="KEY",
    help="Reuse the key of an earlier attempt whose outcome was unknown.",
)
def connect(
    account: str | None,
    fmt: str,
    verbose: bool,
    quiet: bool,
    api_url: str | None,
    api_path: str | None,
    api_key_file: Path | None,
    api_deadline: float,
    strict: bool,
    dry_run: bool,
    apply_recommended_limit: bool,
    idempotency_key: str | None,
    batch: Path | None,
    output: Path | None,
    resume: bool,
    bulk: bool,
    retry_unknown: bool,
    resend_test: bool,
    concurrency: int,
    per_host: int,
    **params: Any,
) -> None:
    """Check ACCOUNT and, only if no check failed, create it on the platform.

    The API key comes from COLDSEND_API_KEY or --api-key-file, never from the command line; its
    format is checked before anything else runs.
    """
    import warnings

    from inboxcheck._errors import InsecureKeyFileWarning
    from inboxcheck.platform.client import _check_base_url
    from inboxcheck.platform.connect import connect as run_connect
    from inboxcheck.platform.key import API_KEY_ENV, DEFAULT_BASE_URL, DEFAULT_PATH, load_api_key

    # A dry run needs no key, but a key it is given is checked as the real run would check it.
    no_key_given = api_key_file is None and not os.environ.get(API_KEY_ENV)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureKeyFileWarning)
        api_key = None if dry_run and no_key_given else load_api_key(key_file=api_key_file)
    for warning in caught:
        # Kept under --quiet: it is about the secret's own file, which the user has to fix.
        notice(f"warning: {warning.message}")
    discovery = discovery_params(params)
    oauth = oauth_params(params)
    options = options_from(params)
    if (account is None) == (batch is None):
        raise click.UsageError("give either ACCOUNT or --batch FILE")
    if oauth_given(oauth):
        # The create call carries passwords (app passwords) for the platform to log in with for
        # months; an access token lasts an hour, so it must never be sent in a password's place.
        raise click.UsageError(
            "connect sends passwords to the platform, and its create call has no OAuth2 field: check "
            "a token login with 'inboxcheck check --oauth-...', connect with an app password"
        )
    base_url, path = api_url or DEFAULT_BASE_URL, api_path or DEFAULT_PATH
    _check_base_url(base_url, allow_insecure_http=False)
    if retry_unknown and not resume:
        raise click.UsageError("--retry-unknown goes with --batch --resume")
    if resend_test and not (resume and params["send_test"]):
        raise click.UsageError("--resend-test goes with --batch --resume --send-test")
    if batch is not None:
        if dry_run or api_key is None:
            raise click.UsageError("--dry-run does not go with --batch")
        _connect_batch(
            batch,
            options,
            api_key=api_key,
            output=output,
            resume=resume,
            bulk=bulk,
            retry_unknown=retry_unknown,
            resend_test=resend_test,
            strict=strict,
            apply_recommended_limit=apply_recommended_limit,
            concurrency=concurrency,
            per_host=per_host,
            base_url=base_url,
            api_path=path,
            discovery=discovery,
            api_deadline=api_deadline,
        )
    assert account is not None
    parsed, leading = read_account(
        account,
        options,
        discovery,
        fmt=fmt,
        verbose=verbose,
        quiet=quiet,
        doing="checking {address} before creating it",
        oauth=oauth,
    )
    if parsed.uses_tokens:
        raise click.UsageError(
            "connect sends passwords to the platform, and its create call has no OAuth2 field: the "
            "INBOXCHECK_*_OAUTH_TOKEN variables go with 'inboxcheck check', connect with an app password"
        )
    sending: list[str] = []
    try:
        result = run_async(
            run_connect(
                parsed,
                api_key=api_key,
                options=options,
                strict=strict,
                dry_run=dry_run,
                apply_recommended_limit=apply_recommended_limit,
                base_url=base_url,
                path=path,
                api_deadline=api_deadline,
                on_wait=(lambda _: None) if quiet else notice,
                idempotency_key=idempotency_key,
                on_sending=sending.append,
                leading=leading,
            )
        )
    except KeyboardInterrupt:
        if not sending:
            raise
        from inboxcheck.cli import EXIT_INTERRUPTED

        # The request may have reached the platform: say so, with the key to look for it by.
        address = escape(parsed.email_address)
        fail(
            f"interrupted: the create of {address} was sent, no answer yet (Idempotency-Key "
            f"{sending[0]}); look for {address} in the platform's sender-account list before running "
            f"again, and if it is not there run again with --idempotency-key {sending[0]}",
            EXIT_INTERRUPTED,
        )
    try:
        emit(ConnectOutput(), result, fmt=fmt, verbose=verbose, quiet=quiet)
    except Exception:
        inbox = result.create.inbox if result.create is not None else None
        if inbox is not None:  # the inbox exists: its id must reach the user whatever failed after
            notice(
                f"created inbox {escape(inbox.id)} for {escape(inbox.email_address)}; do not create it again"
            )
        raise
    sys.exit(result.exit_code)


def _connect_batch(
    path: Path,
    options: CheckOptions,
    *,
    api_key: ApiKey,
    output: Path | None,
    resume: bool,
    bulk: bool,
    retry_unknown: bool,
    resend_test: bool,
    strict: bool,
    apply_recommended_limit: bool,
    concurrency: int,
    per_host: int,
    base_url: str,
    api_path: str,
    discovery: dict[str, Any],
    api_deadline: float,
) -> NoReturn:

    from inboxcheck.platform.batch import CreateLine, connect_batch, require_output
    from inboxcheck.platform.client import PlatformClient

    out = require_output(output)

    def on_create(line: CreateLine) -> None:
        # The inbox id and the message come from the platform's answer: escaped like a server reply.
        if line.outcome == "created":
            click.echo(
                f"created line {line.line} {escape(line.email_address)}: inbox {escape(str(line.inbox_id))} "
                f"(daily_limit {line.daily_limit})"
            )
        else:
            message = line.finding.message if line.finding else ""
            what = line.finding.code if line.finding and line.state == "sent" else str(line.outcome)
            fix = f" {line.finding.fix}" if line.finding and line.finding.fix and line.state == "sent" else ""
            click.echo(
                f"NOT created line {line.line} {escape(line.email_address)}: {what}: {escape(message + fix)}"
            )

    in_flight: dict[int, CreateLine] = {}

    def on_answer(line: CreateLine) -> None:
        in_flight.pop(line.line, None)
        on_create(line)

    async def run() -> ConnectBatchSummary:
        async with PlatformClient(
            api_key, base_url=base_url, path=api_path, deadline=api_deadline, on_wait=notice
        ) as client:
            return await connect_batch(
                path,
                output=out,
                client=client,
                options=options,
                resume=resume,
                strict=strict,
                bulk=bulk,
                retry_unknown=retry_unknown,
                apply_recommended_limit=apply_recommended_limit,
                concurrency=concurrency,
                per_host=per_host,
                on_create=on_answer,
                on_sent=lambda line: in_flight.__setitem__(line.line, line),
                discovery=discovery,
                resend_test=resend_test,
            )

    try:
        summary = run_async(run())
    except KeyboardInterrupt:
        for line in in_flight.values():
            # The log says so too: a --resume reports these as unknown outcomes.
            notice(
                f"line {line.line} {escape(line.email_address)}: the create was sent, no answer yet "
                f"(Idempotency-Key {line.idempotency_key})"
            )
        raise
    for text in summary.describe().splitlines():
        notice(text)
    sys.exit(summary.exit_code)


# Findings of a login that works today but will not for long: told beside a passing gate.
_PASSES_BUT_ENDS: Final = frozenset({"smtp.auth.basic_auth_ending"})


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
    from inboxcheck.cli._report import TextRenderer

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
    # A login that works today but that its provider is switching off (Microsoft's SMTP AUTH Basic
    # authentication) passes the gate; the inbox it creates would break later, so the gate says so.
    for check in result.report.checks:
        for found in check.findings:
            if found.code in _PASSES_BUT_ENDS:
                add(f"Gate note: {escape(found.message)}", hang="    ")
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
