"""What the commands share: the option table, the checking options, and loading the account.

Each option more than one command takes is defined once in :data:`SHARED_OPTIONS`; a command takes
it through :func:`option`, saying only what it says differently (its help text, mostly).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from inboxcheck.cli._oauth import OAUTH_OPTIONS, oauth_tokens
from inboxcheck.cli._terminal import notice, run_async

if TYPE_CHECKING:
    from inboxcheck._models import Account, CheckResult
    from inboxcheck._options import CheckOptions

# A click command function, before and after the shared options are attached.
_Command = TypeVar("_Command", bound=Callable[..., Any])

FAMILIES: Final = ("account", "dns", "smtp", "imap")


# Options more than one command takes, each defined once: flags, type, default and metavar here; a
# command adds its own help text (or changes what it must) through `_option`.
SHARED_OPTIONS: Final[dict[str, tuple[tuple[str, ...], dict[str, Any]]]] = {
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
    "resend-test": (
        ("--resend-test",),
        {
            "is_flag": True,
            "help": "With --resume --send-test: send a new test message to the accounts whose earlier "
            "one may have been delivered (send.message.outcome_unknown); look in their mailboxes first.",
        },
    ),
    "concurrency": (
        ("--concurrency",),
        {"type": click.IntRange(1, 1000), "default": 20, "show_default": True},
    ),
    "per-host": (("--per-host",), {"type": click.IntRange(1, 100), "default": 4, "show_default": True}),
}


def option(name: str, **attrs: Any) -> Callable[[_Command], _Command]:
    """The shared option ``name``, with what this command says differently (its help, mostly)."""
    decls, shared = SHARED_OPTIONS[name]
    return click.option(*decls, **{**shared, **attrs})


def repeatable(flag: str, dest: str, metavar: str, text: str) -> Callable[[_Command], _Command]:
    """An option given once per value; the command receives the values as a tuple."""
    return click.option(flag, dest, multiple=True, metavar=metavar, help=text)


def stacked(decorators: Sequence[Callable[[Any], Any]], function: _Command) -> _Command:
    """``function`` decorated as if ``decorators`` were stacked above it in this order."""
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


# The options every checking command shares (check, connect, diagnose).
CHECK_OPTIONS: Final = (
    option("format", help="Report format on stdout."),
    option("timeout"),
    option(
        "deadline",
        default=None,
        help="Seconds allowed for the whole run.  [default: 60; with --send-test, the send timeout plus 60]",
    ),
    option("nameserver"),
    option("ca-file", help="Also trust the CA certificates in this PEM file."),
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
    repeatable("--dkim-selector", "dkim_selectors", "SELECTOR", "Also try this DKIM selector (repeatable)."),
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
    repeatable(
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
    repeatable(
        "--blocklist-zone",
        "blocklist_zones",
        "LIST",
        "Ask this blocklist: an id from blocklists.toml or [ip:|domain:]ZONE (repeatable; implies "
        "--deliverability).",
    ),
    *OAUTH_OPTIONS,
    option("verbose", help="Show informational findings, timings, and where each password came from."),
    click.option(
        "-q",
        "--quiet",
        is_flag=True,
        help="Print only the verdict line (JSON is unchanged); nothing on stderr but errors.",
    ),
)


# Options that only mean something to the send test: without --send-test they are bad usage.
_SEND_TEST_ONLY: Final = (
    ("--to", "send_to"),
    ("--to-account", "send_to_account"),
    ("--keep-test-message", "keep_test_message"),
    ("--test-header", "test_headers"),
)


def check_options(function: _Command) -> _Command:
    """The options every checking command shares."""
    return stacked(CHECK_OPTIONS, function)


def options_from(params: dict[str, Any]) -> CheckOptions:
    from inboxcheck._options import Family, parse_nameserver
    from inboxcheck._runner import build_options

    if not params["send_test"]:
        given = [flag for flag, name in _SEND_TEST_ONLY if params[name]]
        if given:
            verb = "goes" if len(given) == 1 else "go"
            raise click.UsageError(f"{' and '.join(given)} {verb} with --send-test")
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


def read_account(
    source: str,
    options: CheckOptions | None = None,
    discovery: dict[str, Any] | None = None,
    *,
    fmt: str,
    verbose: bool,
    quiet: bool = False,
    doing: str | None = None,
    oauth: dict[str, Any] | None = None,
) -> tuple[Account, tuple[CheckResult, ...]]:
    """The account, and the ``account.discovered`` result when a partial payload was completed.

    Where each password came from is told under ``-v`` (not with ``quiet``). Asked for JSON, an
    unusable account is also a JSON document on stdout, so that a tool never parses the prose.
    ``doing`` (with ``{address}`` in it) is what the command goes on to do, told on a terminal.
    """

    from inboxcheck._errors import AccountError
    from inboxcheck._input import PasswordSource, parse_account, read_json

    interactive = source != "-" and sys.stdin.isatty()

    def ask(label: str) -> str:
        return str(click.prompt(label, hide_input=True, err=True, default="", show_default=False))

    sources = PasswordSource()
    leading: tuple[CheckResult, ...] = ()
    try:
        data, name = read_json(source)
        # After the file is read: bad input stops the run before a refresh token leaves the machine.
        tokens, leading = oauth_tokens(oauth or {}, options)
        if options is not None:
            from inboxcheck.discovery.complete import complete_payload, is_partial

            if is_partial(data):
                assert isinstance(data, dict)
                if sys.stderr.isatty() and not quiet:
                    notice(f"discovering the settings {name} leaves out ...")
                completion = run_async(
                    complete_payload(data, options=options, source=name, **(discovery or {}))
                )
                data = completion.payload
                leading = (*leading, completion.result())
                if not quiet:
                    notice(f"filled by discovery: {', '.join(completion.filled) or 'nothing'}")
        account = parse_account(
            data, source=name, prompt=ask if interactive else None, sources=sources, tokens=tokens
        )
    except AccountError as exc:
        if fmt == "json":
            from inboxcheck.cli._report import render_input_error

            click.echo(render_input_error(exc))
        raise
    if verbose and not quiet:
        for field, origin in sources.items():
            if origin != "file":
                notice(f"{field} taken from {origin}")
    if doing is not None and sys.stderr.isatty() and not quiet:
        notice(doing.format(address=account.email_address) + " ...")
    return account, leading


def discovery_options(function: _Command) -> _Command:
    """Options for completing a partial payload (only email_address and what the user knows)."""
    return stacked(
        (
            option(
                "trust-host",
                help="With a partial payload: accept this discovered host outside the address's domain.",
            ),
            option(
                "autoconfig-port",
                help="With a partial payload: fetch autoconfig files from this HTTPS port (for test labs).",
            ),
        ),
        function,
    )


def discovery_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"trust_hosts": params.pop("trust_hosts"), "autoconfig_port": params.pop("autoconfig_port")}
