"""``inboxcheck serve``: the checks as an HTTP service (the ``serve`` extra: FastAPI and uvicorn).

FastAPI and uvicorn are imported when the command runs, never when the CLI starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from inboxcheck.fleet._crypto import FleetKey

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8025, show_default=True, help="Port to listen on."
)
@click.option(
    "--nameserver",
    "nameservers",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Send all DNS lookups to this server instead of the system resolver (repeatable).",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust the CA certificates in this PEM file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=600),
    default=10.0,
    show_default=True,
    help="Seconds allowed for each network step.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=None,
    help="Seconds allowed for each check.  [default: 60; with send_test, the send timeout plus 60]",
)
@click.option(
    "--allow-plaintext",
    is_flag=True,
    help="Allow sending passwords over unencrypted connections (never by default).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Checks running at once (requests and batch accounts together).",
)
@click.option(
    "--queue",
    type=click.IntRange(0, 10000),
    default=None,
    help="Requests that may wait for a slot before 429.  [default: the concurrency]",
)
@click.option(
    "--per-host",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="Batch accounts checked at once against one server host.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="API tokens, one a line (also from INBOXCHECK_API_TOKENS, comma-separated).",
)
@click.option("--no-auth", is_flag=True, help="Serve without tokens (only on a loopback address).")
@click.option(
    "--drain",
    type=click.FloatRange(min=0, max=3600),
    default=30.0,
    show_default=True,
    help="Seconds in-flight requests get to finish after SIGTERM.",
)
@click.option(
    "--fleet-db",
    metavar="URL",
    help="Also serve the fleet (/v1/fleet/...) from this database: sqlite:///PATH or "
    "postgresql://USER@HOST/NAME.",
)
@click.option(
    "--fleet-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The fleet's key, to add accounts over HTTP [default: env INBOXCHECK_FLEET_KEY; without "
    "one, the fleet is read-only].",
)
def serve(
    host: str,
    port: int,
    nameservers: tuple[str, ...],
    ca_file: Path | None,
    timeout: float,
    deadline: float | None,
    allow_plaintext: bool,
    concurrency: int,
    queue: int | None,
    per_host: int,
    token_file: Path | None,
    no_auth: bool,
    drain: float,
    fleet_db: str | None,
    fleet_key_file: Path | None,
) -> None:
    """Serve the checks over HTTP: POST /v1/check, /v1/diagnose, /v1/discover, /v1/batches.

    With --fleet-db, the fleet too (/v1/fleet/accounts, .../{address}/history, /v1/fleet/changes).

    Clients authenticate with `Authorization: Bearer TOKEN`; the tokens come from
    INBOXCHECK_API_TOKENS (comma-separated) or --token-file. Without a token the server refuses to
    start, unless --no-auth on a loopback address.
    """
    from inboxcheck._options import parse_nameserver
    from inboxcheck._runner import build_options

    try:
        from inboxcheck.service.server import serve as run_server
        from inboxcheck.service.settings import ENV_TOKENS, ServiceSettings, is_loopback, read_tokens
    except ImportError as exc:
        raise click.UsageError(
            f"inboxcheck serve needs the serve extra ({exc.name} is missing): pip install 'inboxcheck[serve]'"
        ) from None
    tokens = read_tokens(os.environ.get(ENV_TOKENS), token_file)
    if tokens and no_auth:
        raise click.UsageError("--no-auth and API tokens together: choose one")
    if not tokens and not no_auth:
        raise click.UsageError(
            f"no API token: set {ENV_TOKENS} or give --token-file (or --no-auth on a loopback address)"
        )
    if no_auth and not is_loopback(host):
        raise click.UsageError(f"--no-auth is allowed only on a loopback address, not {host}")
    options = build_options(
        None,
        {
            **({} if deadline is None else {"deadline": deadline}),
            "timeout": timeout,
            "nameservers": tuple(parse_nameserver(n) for n in nameservers),
            "ca_file": ca_file,
            "allow_plaintext": allow_plaintext,
        },
    )
    if fleet_key_file is not None and fleet_db is None:
        raise click.UsageError("--fleet-key-file needs --fleet-db")
    fleet_key = _fleet(fleet_db, fleet_key_file) if fleet_db is not None else None
    settings = ServiceSettings(
        options=options,
        tokens=tokens,
        concurrency=concurrency,
        queue=concurrency if queue is None else queue,
        per_host=per_host,
        drain_seconds=drain,
        fleet_db=fleet_db,
        fleet_key=fleet_key,
    )
    import signal

    # The CLI turns SIGTERM into Ctrl-C for the commands that run once; a server drains on SIGTERM
    # instead (uvicorn's own handler), and uvicorn hands the signal back to the default on its way out.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run_server(settings, host=host, port=port)


def _fleet(url: str, key_file: Path | None) -> FleetKey | None:
    """The fleet's key (None when neither --fleet-key-file nor INBOXCHECK_FLEET_KEY gives one),
    after the database was opened once: a bad URL or an old schema stops the server before it starts.
    SQLAlchemy is imported here, never when the server runs without the fleet."""
    from inboxcheck.cli._terminal import run_async
    from inboxcheck.fleet._crypto import KEY_ENV, load_key

    # The key first: a bad one stops the server before a new database file is made.
    key = load_key(key_file=key_file) if key_file is not None or os.environ.get(KEY_ENV) else None
    try:
        from inboxcheck.service.fleet import check_fleet_db

        run_async(check_fleet_db(url))
    except ImportError as exc:
        raise click.UsageError(
            f"--fleet-db needs the fleet extra ({exc.name} is missing): pip install 'inboxcheck[fleet]'"
        ) from None
    return key
