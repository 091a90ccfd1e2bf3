"""The command line: a thin layer over the library. Data to stdout, notices to stderr.

Exit codes: 0 nothing failed; 1 a check failed; 2 bad input or usage; 3 nothing failed but some
check could not tell; 70 a bug in inboxcheck; 130 interrupted.

Each command lives in its own module of this package and is named in :data:`COMMANDS` with the line
``inboxcheck --help`` shows for it; a command's module is imported only when that command runs (or
its own ``--help`` is asked for), so ``inboxcheck check`` never loads ``connect``'s platform client.
A new command is a module here plus one line in the table.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Final, NamedTuple, NoReturn

import click

from inboxcheck._version import __version__
from inboxcheck.cli._terminal import ErrorGroup, fail

__all__ = ["COMMANDS", "EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_OK", "cli", "main"]

EXIT_OK: Final = 0
EXIT_BUG: Final = 70
EXIT_INTERRUPTED: Final = 130


class Entry(NamedTuple):
    """Where a command lives ("module:attribute") and its one line in ``inboxcheck --help``."""

    target: str
    short_help: str


# Every command, in the order ``--help`` lists them. A test keeps each short help equal to the first
# line of the command's own docstring, so that the two never drift apart.
COMMANDS: Final[dict[str, Entry]] = {
    "check": Entry(
        "inboxcheck.cli.check:check",
        "Check ACCOUNT (a JSON file in the platform's format, or - for stdin), or a --batch of them.",
    ),
    "connect": Entry(
        "inboxcheck.cli.connect:connect",
        "Check ACCOUNT and, only if no check failed, create it on the platform.",
    ),
    "diagnose": Entry(
        "inboxcheck.cli.diagnose:diagnose",
        "Troubleshoot ACCOUNT: rank the probable causes and try the alternates that could work.",
    ),
    "discover": Entry(
        "inboxcheck.cli.discover:discover",
        "Find the SMTP and IMAP settings of ADDRESS and try them.",
    ),
    "spf": Entry(
        "inboxcheck.cli.spf:spf",
        "Evaluate SPF (RFC 7208 check_host) for a client at IP sending as ADDRESS or DOMAIN.",
    ),
    "fleet": Entry(
        "inboxcheck.cli.fleet:fleet",
        "Watch a fleet of inboxes: re-check them on a schedule, keep every report, say what changed.",
    ),
    "presets": Entry(
        "inboxcheck.cli.presets:presets",
        "List the provider presets (hosts, ports, TLS, DNS and policies per provider).",
    ),
    "serve": Entry(
        "inboxcheck.cli.serve:serve",
        "Serve the checks over HTTP: POST /v1/check, /v1/diagnose, /v1/discover, /v1/batches.",
    ),
    "schema": Entry(
        "inboxcheck.cli.schema:schema",
        "Print the JSON Schema of a document the CLI prints (default: the check report).",
    ),
}


def load_command(name: str) -> click.Command:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    module_name, _, attribute = COMMANDS[name].target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{COMMANDS[name].target} is not a click command")
    return command


class LazyGroup(ErrorGroup):
    """The top-level group: commands from :data:`COMMANDS`, each imported only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The table's short help, shortened as click shortens a docstring: listing imports no command.
        extra = [n for n in super().list_commands(ctx) if n not in COMMANDS]
        names = [*COMMANDS, *extra]
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=entry.short_help).get_short_help_str(limit))
            for name, entry in COMMANDS.items()
        ]
        for name in extra:
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, "-V", "--version", prog_name="inboxcheck")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Check a bring-your-own-credentials SMTP/IMAP inbox before connecting it, and explain failures."""
    ctx.obj = {"debug": debug}


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM takes Ctrl-C's way: the running command is cancelled and tidies up (a send test
    deletes its message), instead of the process dying where it stands."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # SIGINT ignored (started in the background): a SIGTERM still ends the command.
        raise KeyboardInterrupt
    # Whoever handles Ctrl-C now (Python's KeyboardInterrupt, or a running command's event loop,
    # which cancels the command) handles this one.
    signal.raise_signal(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``inboxcheck`` command: turns every error into a message and an exit code."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="inboxcheck", standalone_mode=False
        )
    except click.exceptions.Abort:
        # click has already ended the line (of a prompt, or of ^C) before raising Abort.
        fail("interrupted", EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("INBOXCHECK_DEBUG") or "--debug" in (argv or sys.argv):
            import traceback  # only here: --help and --version never load it

            traceback.print_exc()
        fail(
            f"internal error ({type(exc).__name__}); this is a bug in inboxcheck. "
            "Run again with --debug and report the traceback.",
            EXIT_BUG,
        )
    sys.exit(result if isinstance(result, int) else EXIT_OK)
