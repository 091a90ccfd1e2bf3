"""The command line: a thin layer over the library. Data to stdout, notices to stderr.

Exit codes: 0 nothing failed; 1 a check failed; 2 bad input or usage; 3 nothing failed but some
check could not tell; 70 a bug in inboxcheck; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO, TypeVar

import click

from inboxcheck._version import __version__

if TYPE_CHECKING:
    from inboxcheck._models import Account, CheckResult
    from inboxcheck._options import CheckOptions
    from inboxcheck.platform.batch import ConnectBatchSummary
    from inboxcheck.platform.key import ApiKey

# A click command function, before and after the shared options are attached.
_Command = TypeVar("_Command", bound=Callable[..., Any])

EXIT_OK: Final = 0
EXIT_BUG: Final = 70
EXIT_INTERRUPTED: Final = 130
# Below this, indents would leave no room for words.
_MIN_WIDTH: Final = 40

FAMILIES: Final = ("account", "dns", "smtp", "imap")


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug")) or bool(os.environ.get("INBOXCHECK_DEBUG"))


def _notice(message: str) -> None:
    from inboxcheck._render import escape_lines

    # Notices quote paths, payload fields and server answers: escaped like every text output.
    click.echo(f"inboxcheck: {escape_lines(message)}", err=True)


def _width(stream: TextIO) -> int | None:
    """The width to wrap text to: COLUMNS when set, else the terminal's; unwrapped into a pipe."""
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), _MIN_WIDTH)
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        return max(shutil.get_terminal_size().columns, _MIN_WIDTH)
    return None


def _colour_wanted(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _unicode_ok(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✔✘–·".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class _Group(click.Group):
    """Turns an InboxcheckError into one message on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from inboxcheck._errors import InboxcheckError

        try:
            return super().invoke(ctx)
        except InboxcheckError as exc:
            _notice(f"error: {exc}")
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="inboxcheck")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Check a bring-your-own-credentials SMTP/IMAP inbox before connecting it, and explain failures."""
    ctx.obj = {"debug": debug}


# Options more than one command takes, each defined once: flags, type, default and metavar here; a
# command adds its own help text (or changes what it must) through `_option`.
_SHARED_OPTIONS: Final[dict[str, tuple[tuple[str, ...], dict[str, Any]]]] = {
    "format": (
        ("--format", "fmt"),
        {"type": click.Choice(["text", "json"]), "default": "text", "show_default": True},
    ),
    "timeout": (
        ("--timeout",),
        {
            "type": click.FloatRange(min=0, min_open=True, max=600),
            "default": 10.0,
            "show_default": True,
            "help": "Seconds allowed for each network step.",
        },
    ),
    "deadline": (("--deadline",), {"type": click.FloatRange(min=0, min_open=True, max=3600)}),
    "nameserver": (
        ("--nameserver", "nameservers"),
        {
            "multiple": True,
            "metavar": "HOST[:PORT]",
            "help": "Send all DNS lookups to this server instead of the system resolver (repeatable).",
        },
    ),
    "ca-file": (("--ca-file",), {"type": click.Path(exists=True, dir_okay=False, path_type=Path)}),
    "trust-host": (("--trust-host", "trust_hosts"), {"multiple": True, "metavar": "HOST"}),
    "autoconfig-port": (
        ("--autoconfig-port",),
        {"type": click.IntRange(1, 65535), "default": None, "metavar": "PORT"},
    ),
    "verbose": (("-v", "--verbose"), {"is_flag": True}),
    "output": (("--output",), {"type": click.Path(dir_okay=False, path_type=Path)}),
    "resume": (("--resume",), {"is_flag": True}),
    "concurrency": (
        ("--concurrency",),
        {"type": click.IntRange(1, 1000), "default": 20, "show_default": True},
    ),
    "per-host": (("--per-host",), {"type": click.IntRange(1, 100), "default": 4, "show_default": True}),
}


def _option(name: str, **attrs: Any) -> Callable[[_Command], _Command]:
    """The shared option ``name``, with what this command says differently (its help, mostly)."""
    decls, shared = _SHARED_OPTIONS[name]
    return click.option(*decls, **{**shared, **attrs})


def _repeatable(flag: str, dest: str, metavar: str, text: str) -> Callable[[_Command], _Command]:
    """An option given once per value; the command receives the values as a tuple."""
    return click.option(flag, dest, multiple=True, metavar=metavar, help=text)


def _stacked(decorators: Sequence[Callable[[Any], Any]], function: _Command) -> _Command:
    """``function`` decorated as if ``decorators`` were stacked above it in this order."""
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


# The options every checking command shares (check, connect, diagnose).
_CHECK_OPTIONS: Final = (
    _option("format", help="Report format on stdout."),
    _option("timeout"),
    _option(
        "deadline",
        default=None,
        help="Seconds allowed for the whole run.  [default: 60; with --send-test, the send timeout plus 60]",
    ),
    _option("nameserver"),
    _option("ca-file", help="Also trust the CA certificates in this PEM file."),
    click.option(
        "--stage",
        type=click.Choice(["new", "warming", "established"]),
        default="new",
        show_default=True,
        help="How far the mailbox is in its warm-up.",
    ),
    click.option(
        "--allow-plaintext",
        is_flag=True,
        help="Allow sending the password over an unencrypted connection (never by default).",
    ),
    _repeatable("--dkim-selector", "dkim_selectors", "SELECTOR", "Also try this DKIM selector (repeatable)."),
    *(
        click.option(f"--{name}", name, multiple=True, type=click.Choice(FAMILIES), help=text)
        for name, text in (
            ("only", "Run only these groups of checks (repeatable)."),
            ("skip", "Do not run these groups of checks (repeatable)."),
        )
    ),
    click.option(
        "--send-test",
        is_flag=True,
        help="Send one real test message, find it over IMAP, verify its DKIM/SPF/DMARC, delete it.",
    ),
    click.option(
        "--to",
        "send_to",
        metavar="ADDRESS",
        help="With --send-test: send the test message here instead of to the account itself.",
    ),
    click.option(
        "--to-account",
        "send_to_account",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="With --send-test: the payload (with passwords) of the mailbox to send to; its IMAP "
        "finds, verifies and deletes the message there.",
    ),
    click.option(
        "--send-timeout",
        type=click.FloatRange(min=0, min_open=True, max=3600),
        default=120.0,
        show_default=True,
        help="With --send-test: seconds to look for the test message.",
    ),
    click.option(
        "--keep-test-message", is_flag=True, help="With --send-test: do not delete the test message."
    ),
    _repeatable(
        "--test-header",
        "test_headers",
        "NAME:VALUE",
        "With --send-test: add this header to the test message (repeatable).",
    ),
    click.option(
        "--deliverability",
        is_flag=True,
        help="Also check the SMTP host's reverse DNS and DNS blocklists (lookups go to the lists).",
    ),
    _repeatable(
        "--blocklist-zone",
        "blocklist_zones",
        "LIST",
        "Ask this blocklist: an id from blocklists.toml or [ip:|domain:]ZONE (repeatable; implies "
        "--deliverability).",
    ),
    _option("verbose", help="Show informational findings, timings, and where each password came from."),
    click.option(
        "-q",
        "--quiet",
        is_flag=True,
        help="Print only the verdict line (JSON is unchanged); nothing on stderr but errors.",
    ),
)


def _check_options(function: _Command) -> _Command:
    """The options every checking command shares."""
    return _stacked(_CHECK_OPTIONS, function)


def _options_from(params: dict[str, Any]) -> CheckOptions:
    from inboxcheck._options import Family, parse_nameserver
    from inboxcheck._runner import build_options

    families = set(params["only"] or FAMILIES) - set(params["skip"])
    # A deadline not given is left out, so that the options can make room for the send test.
    deadline = {} if params["deadline"] is None else {"deadline": params["deadline"]}
    return build_options(
        None,
        {
            **deadline,
            "timeout": params["timeout"],
            "nameservers": tuple(parse_nameserver(n) for n in params["nameservers"]),
            "ca_file": params["ca_file"],
            "stage": params["stage"],
            "allow_plaintext": params["allow_plaintext"],
            "dkim_selectors": tuple(params["dkim_selectors"]),
            "families": frozenset(Family(f) for f in families),
            "send_test": params["send_test"],
            "send_to": params["send_to"],
            "send_to_account": _recipient(params["send_to_account"]),
            "send_timeout": params["send_timeout"],
            "keep_test_message": params["keep_test_message"],
            "test_headers": tuple(_header(text) for text in params["test_headers"]),
            "deliverability": params["deliverability"],
            "blocklist_zones": tuple(params["blocklist_zones"]),
        },
    )


def _recipient(path: Path | None) -> Account | None:
    """The --to-account payload: passwords from the file only (the environment's are the account's)."""
    from inboxcheck._input import load_account

    return None if path is None else load_account(path, env={})


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise click.BadParameter(f"{text!r}: give NAME:VALUE", param_hint="--test-header")
    return name.strip(), value.strip()


def _load_account_for_cli(
    source: str,
    options: CheckOptions | None = None,
    discovery: dict[str, Any] | None = None,
    *,
    fmt: str,
    verbose: bool,
    quiet: bool = False,
    doing: str | None = None,
) -> tuple[Account, tuple[CheckResult, ...]]:
    """The account, and the ``account.discovered`` result when a partial payload was completed.

    Where each password came from is told under ``-v`` (not with ``quiet``). Asked for JSON, an
    unusable account is also a JSON document on stdout, so that a tool never parses the prose.
    ``doing`` (with ``{address}`` in it) is what the command goes on to do, told on a terminal.
    """
    import asyncio

    from inboxcheck._errors import AccountError
    from inboxcheck._input import PasswordSource, parse_account, read_json

    interactive = source != "-" and sys.stdin.isatty()

    def ask(label: str) -> str:
        return str(click.prompt(label, hide_input=True, err=True, default="", show_default=False))

    sources = PasswordSource()
    leading: tuple[CheckResult, ...] = ()
    try:
        data, name = read_json(source)
        if options is not None:
            from inboxcheck.discovery.complete import complete_payload, is_partial

            if is_partial(data):
                assert isinstance(data, dict)
                if sys.stderr.isatty() and not quiet:
                    _notice(f"discovering the settings {name} leaves out ...")
                completion = asyncio.run(
                    complete_payload(data, options=options, source=name, **(discovery or {}))
                )
                data = completion.payload
                leading = (completion.result(),)
                if not quiet:
                    _notice(f"filled by discovery: {', '.join(completion.filled) or 'nothing'}")
        account = parse_account(data, source=name, prompt=ask if interactive else None, sources=sources)
    except AccountError as exc:
        if fmt == "json":
            from inboxcheck._render import render_input_error

            click.echo(render_input_error(exc))
        raise
    if verbose and not quiet:
        for field, origin in sources.items():
            if origin != "file":
                _notice(f"{field} taken from {origin}")
    if doing is not None and sys.stderr.isatty() and not quiet:
        _notice(doing.format(address=account.email_address) + " ...")
    return account, leading


def _discovery_options(function: _Command) -> _Command:
    """Options for completing a partial payload (only email_address and what the user knows)."""
    return _stacked(
        (
            _option(
                "trust-host",
                help="With a partial payload: accept this discovered host outside the address's domain.",
            ),
            _option(
                "autoconfig-port",
                help="With a partial payload: fetch autoconfig files from this HTTPS port (for test labs).",
            ),
        ),
        function,
    )


def _discovery_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"trust_hosts": params.pop("trust_hosts"), "autoconfig_port": params.pop("autoconfig_port")}


@cli.command()
@click.argument("account", metavar="ACCOUNT", required=False)
@_check_options
@_discovery_options
@click.option(
    "--batch",
    "batch",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Check every account in this JSONL or CSV file (the platform's field names); - for stdin.",
)
@_option("output", help="With --batch: append each account's result to this JSONL file as it finishes.")
@_option("resume", help="With --batch --output: skip the accounts already in the output.")
@click.option(
    "--retry-errors",
    is_flag=True,
    help="With --resume: check again the accounts whose result was 'could not tell'.",
)
@_option("concurrency", help="With --batch: accounts checked at once.")
@_option("per-host", help="With --batch: accounts checked at once against one server host.")
def check(
    account: str | None,
    fmt: str,
    verbose: bool,
    quiet: bool,
    batch: Path | None,
    output: Path | None,
    resume: bool,
    retry_errors: bool,
    concurrency: int,
    per_host: int,
    **params: Any,
) -> None:
    """Check ACCOUNT (a JSON file in the platform's format, or - for stdin), or a --batch of them.

    Passwords may be left out of the file: they are then read from INBOXCHECK_SMTP_PASSWORD and
    INBOXCHECK_IMAP_PASSWORD (IMAP defaults to the SMTP password), or asked for on a terminal.
    """
    import asyncio

    from inboxcheck._render import Format, TextRenderer, renderer_for
    from inboxcheck._runner import run_checks

    if (account is None) == (batch is None):
        raise click.UsageError("give either ACCOUNT or --batch FILE")
    if batch is None and (output or resume):
        raise click.UsageError("--output and --resume go with --batch")
    if retry_errors and not resume:
        raise click.UsageError("--retry-errors goes with --resume")
    if resume and output is None:
        raise click.UsageError("--resume needs --output: the output file is what a run resumes from")
    discovery = _discovery_params(params)
    options = _options_from(params)
    if batch is not None:
        _run_batch(
            batch,
            options,
            fmt=fmt,
            output=output,
            resume=resume,
            retry_errors=retry_errors,
            concurrency=concurrency,
            per_host=per_host,
            discovery=discovery,
            quiet=quiet,
        )
    assert account is not None
    parsed, leading = _load_account_for_cli(
        account, options, discovery, fmt=fmt, verbose=verbose, quiet=quiet, doing="checking {address}"
    )
    report = asyncio.run(run_checks(parsed, options=options, leading=leading))
    if _debug_enabled():
        for result in report.checks:
            if result.traceback:
                click.echo(f"--- traceback of {result.name} ---\n{result.traceback}", err=True)
    renderer = renderer_for(
        Format(fmt),
        colour=_colour_wanted(sys.stdout),
        unicode=_unicode_ok(sys.stdout),
        verbose=verbose,
        width=_width(sys.stdout),
    )
    if quiet and isinstance(renderer, TextRenderer):
        click.echo(renderer.verdict_line(report))
    else:
        click.echo(renderer.render(report), nl=False)
    sys.exit(report.exit_code)


def _run_batch(
    path: Path,
    options: CheckOptions,
    *,
    fmt: str,
    output: Path | None,
    resume: bool,
    retry_errors: bool,
    concurrency: int,
    per_host: int,
    discovery: dict[str, Any],
    quiet: bool,
) -> NoReturn:
    import asyncio
    import time

    from inboxcheck._batch import BatchLine, count_accounts, run_batch
    from inboxcheck._render import escape

    colour, mark_unicode = _colour_wanted(sys.stdout), _unicode_ok(sys.stdout)
    progress = _Progress(count_accounts(path), clock=time.monotonic) if not quiet else None
    live = progress is not None and sys.stderr.isatty()
    marks = {"pass": "✔", "warn": "!", "fail": "✘", "error": "?", "invalid": "✘"}
    colours = {"pass": "green", "warn": "yellow", "fail": "red", "error": "magenta", "invalid": "red"}

    def on_start(resumed: int) -> None:
        if progress is not None:
            progress.start(resumed)

    def on_result(record: BatchLine) -> None:
        if progress is not None:
            progress.done += 1
        verdict = str(record.verdict)
        if fmt == "text":
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
    summary = asyncio.run(
        run_batch(
            path,
            options=options,
            output=output,
            stream=stream,
            resume=resume,
            retry_errors=retry_errors,
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
        _notice(progress.describe(final=True))
        for line in summary.describe().splitlines():
            _notice(line)
    sys.exit(summary.exit_code)


class _Progress:
    """A batch's progress: done of total, percentage, rate and time left."""

    def __init__(self, total: int | None, *, clock: Callable[[], float]) -> None:
        self.total = total
        self.clock = clock
        self.started = clock()
        self.done = 0

    def start(self, resumed: int) -> None:
        """Accounts already in the output when resuming are not this run's work."""
        if self.total is not None:
            self.total = max(self.total - resumed, 0)
        self.started = self.clock()

    def describe(self, *, final: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.done / elapsed
        # The count is of lines and may miss a CSV record spanning several: never show more than 100%.
        total = max(self.total, self.done) if self.total is not None else None
        parts = [f"{self.done}/{total} checked" if total is not None else f"{self.done} checked"]
        if total:
            parts.append(f"{100 * self.done // total}%")
        parts.append(f"{rate:.1f}/s")
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif total is not None and rate > 0:
            parts.append(f"ETA {_duration((total - self.done) / rate)}")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@cli.command()
@click.argument("account", metavar="ACCOUNT", required=False)
@_check_options
@_discovery_options
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check every account of this JSONL or CSV file, then create those that passed.",
)
@_option("output", help="With --batch: the results log (JSONL).")
@_option("resume", help="With --batch: continue the run logged in --output.")
@click.option("--bulk", is_flag=True, help="With --batch: create through the bulk endpoint, 100 a call.")
@_option("concurrency")
@_option("per-host")
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
    concurrency: int,
    per_host: int,
    **params: Any,
) -> None:
    """Check ACCOUNT and, only if no check failed, create it on the platform.

    The API key comes from COLDSEND_API_KEY or --api-key-file, never from the command line; its
    format is checked before anything else runs.
    """
    import asyncio
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
        _notice(f"warning: {warning.message}")
    discovery = _discovery_params(params)
    options = _options_from(params)
    if (account is None) == (batch is None):
        raise click.UsageError("give either ACCOUNT or --batch FILE")
    base_url, path = api_url or DEFAULT_BASE_URL, api_path or DEFAULT_PATH
    _check_base_url(base_url, allow_insecure_http=False)
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
    parsed, leading = _load_account_for_cli(
        account,
        options,
        discovery,
        fmt=fmt,
        verbose=verbose,
        quiet=quiet,
        doing="checking {address} before creating it",
    )
    result = asyncio.run(
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
            on_wait=(lambda _: None) if quiet else _notice,
            idempotency_key=idempotency_key,
            leading=leading,
        )
    )
    if fmt == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        from inboxcheck._render import render_connect

        stdout = sys.stdout
        text = render_connect(
            result,
            colour=_colour_wanted(stdout),
            unicode=_unicode_ok(stdout),
            verbose=verbose,
            width=_width(stdout),
            quiet=quiet,
        )
        click.echo(text, nl=False)
    sys.exit(result.exit_code)


def _connect_batch(
    path: Path,
    options: CheckOptions,
    *,
    api_key: ApiKey,
    output: Path | None,
    resume: bool,
    bulk: bool,
    strict: bool,
    apply_recommended_limit: bool,
    concurrency: int,
    per_host: int,
    base_url: str,
    api_path: str,
    discovery: dict[str, Any],
    api_deadline: float,
) -> NoReturn:
    import asyncio

    from inboxcheck.platform.batch import CreateLine, connect_batch, require_output
    from inboxcheck.platform.client import PlatformClient

    out = require_output(output)

    from inboxcheck._render import escape

    def on_create(line: CreateLine) -> None:
        # The inbox id and the message come from the platform's answer: escaped like a server reply.
        if line.outcome.value == "created":
            click.echo(
                f"created line {line.line} {escape(line.email_address)}: inbox {escape(str(line.inbox_id))} "
                f"(daily_limit {line.daily_limit})"
            )
        else:
            message = line.finding.message if line.finding else ""
            click.echo(
                f"NOT created line {line.line} {escape(line.email_address)}: {line.outcome.value}: "
                f"{escape(message)}"
            )

    async def run() -> ConnectBatchSummary:
        async with PlatformClient(
            api_key, base_url=base_url, path=api_path, deadline=api_deadline, on_wait=_notice
        ) as client:
            return await connect_batch(
                path,
                output=out,
                client=client,
                options=options,
                resume=resume,
                strict=strict,
                bulk=bulk,
                apply_recommended_limit=apply_recommended_limit,
                concurrency=concurrency,
                per_host=per_host,
                on_create=on_create,
                discovery=discovery,
            )

    summary = asyncio.run(run())
    for text in summary.describe().splitlines():
        _notice(text)
    sys.exit(summary.exit_code)


@cli.command()
@click.argument("account", metavar="ACCOUNT")
@_check_options
@_discovery_options
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An earlier JSON report of this account, to show what changed since (DKIM key, MX).",
)
@click.option("--no-alternates", is_flag=True, help="Do not try the provider's other hosts and ports.")
def diagnose(
    account: str,
    fmt: str,
    verbose: bool,
    quiet: bool,
    previous: Path | None,
    no_alternates: bool,
    **params: Any,
) -> None:
    """Troubleshoot ACCOUNT: rank the probable causes and try the alternates that could work.

    Runs every check, ranks the causes (most likely first) with their evidence, adds what a preflight
    does not need (a certificate expiring soon, SPF headroom, a DKIM key that changed since
    --previous), and when a login fails for a reason another endpoint could avoid, tries the
    provider's other hosts, ports and TLS modes and names the payload fields to change.
    """
    import asyncio

    from inboxcheck._diagnose import diagnose as run_diagnose
    from inboxcheck._models import Report

    earlier = None
    if previous is not None:
        try:
            earlier = Report.model_validate_json(previous.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.UsageError(
                f"--previous {previous}: not an inboxcheck JSON report ({type(exc).__name__})"
            ) from None
    discovery = _discovery_params(params)
    options = _options_from(params)
    parsed, leading = _load_account_for_cli(
        account, options, discovery, fmt=fmt, verbose=verbose, quiet=quiet, doing="diagnosing {address}"
    )
    result = asyncio.run(
        run_diagnose(
            parsed, options=options, previous=earlier, try_alternates=not no_alternates, leading=leading
        )
    )
    if fmt == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        from inboxcheck._render import TextRenderer, render_diagnosis

        stdout = sys.stdout
        colour, unicode, width = _colour_wanted(stdout), _unicode_ok(stdout), _width(stdout)
        if quiet:
            text = TextRenderer(colour=colour, unicode=unicode).verdict_line(result.report) + "\n"
        else:
            text = render_diagnosis(result, colour=colour, unicode=unicode, verbose=verbose, width=width)
        click.echo(text, nl=False)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("address", metavar="ADDRESS")
@_option("format", help="Output format on stdout.")
@click.option(
    "--write",
    "write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the payload found (without passwords, mode 0600) to this file, for check and connect.",
)
@click.option("--force", is_flag=True, help="With --write: replace the file if it exists.")
@_option("timeout")
@_option("deadline", default=60.0, show_default=True, help="Seconds allowed for the whole discovery.")
@_option("nameserver")
@_option(
    "ca-file",
    help="Also trust the CA certificates in this PEM file (mail servers and autoconfig web servers).",
)
@_option(
    "trust-host",
    help="Allow the password to go to this discovered host outside the address's domain (repeatable).",
)
@click.option("--no-probe", is_flag=True, help="Only gather the settings; connect to no mail server.")
@click.option(
    "--ask-password", is_flag=True, help="Ask for the password on the terminal (else from the environment)."
)
@_option(
    "autoconfig-port", help="Fetch autoconfig files from this HTTPS port instead of 443 (for test labs)."
)
@_option("verbose", help="Show the sources asked and informational findings.")
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
    import asyncio

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
        _notice("a password is sent only over verified TLS to a host it may go to")
    result = asyncio.run(
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
    if fmt == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        from inboxcheck._render import render_discovery

        stdout = sys.stdout
        click.echo(
            render_discovery(
                result,
                colour=_colour_wanted(stdout),
                unicode=_unicode_ok(stdout),
                verbose=verbose,
                width=_width(stdout),
            ),
            nl=False,
        )
    if write is not None:
        if result.account is None:
            _notice(f"nothing written to {write}: no settings were found")
        else:
            write_payload(write, result.account, replace=force)
            _notice(f"wrote the payload (no passwords) to {write}")
    sys.exit(result.exit_code)


@cli.group(cls=_Group, invoke_without_command=True)
@_option("format")
@click.pass_context
def presets(ctx: click.Context, fmt: str) -> None:
    """List the provider presets (hosts, ports, TLS, DNS and policies per provider)."""
    if ctx.invoked_subcommand is not None:
        return
    from inboxcheck._presets import load_presets

    loaded = load_presets()
    if fmt == "json":
        click.echo(json.dumps([p.model_dump(mode="json") for p in loaded], indent=2))
        return
    rows = []
    for preset in loaded:
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
    from inboxcheck._render import escape

    header = ("ID", "NAME", "INBOX TYPE", "SMTP", "IMAP")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(escape(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@presets.command("show")
@click.argument("preset_id", metavar="ID")
@_option("format")
def presets_show(preset_id: str, fmt: str) -> None:
    """Print one preset in full."""
    from inboxcheck._presets import load_presets

    preset = load_presets().get(preset_id)
    if fmt == "json":
        click.echo(preset.model_dump_json(indent=2))
        return
    from inboxcheck._render import describe_preset

    click.echo(describe_preset(preset, width=_width(sys.stdout)))


@cli.command()
@click.option("--discover", "of_discover", is_flag=True, help="The schema of discover --format json instead.")
def schema(of_discover: bool) -> None:
    """Print the JSON Schema of the report that --format json writes."""
    from inboxcheck._schema import discovery_schema, report_schema

    click.echo(json.dumps(discovery_schema() if of_discover else report_schema(), indent=2))


def _fail(message: str, code: int) -> NoReturn:
    _notice(f"error: {message}")
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``inboxcheck`` command: turns every error into a message and an exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="inboxcheck", standalone_mode=False
        )
    except click.exceptions.Abort:
        # click has already ended the line (of a prompt, or of ^C) before raising Abort.
        _fail("interrupted", EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("INBOXCHECK_DEBUG") or "--debug" in (argv or sys.argv):
            traceback.print_exc()
        _fail(
            f"internal error ({type(exc).__name__}); this is a bug in inboxcheck. "
            "Run again with --debug and report the traceback.",
            EXIT_BUG,
        )
    sys.exit(result if isinstance(result, int) else EXIT_OK)


cli.add_command(__import__("inboxcheck.cli.fleet", fromlist=["fleet"]).fleet)  # rewired by issue 22
