"""``inboxcheck schema [NAME]``: the committed JSON Schema of a document the CLI prints."""

from __future__ import annotations

import json

import click

from inboxcheck._schema import DOCUMENTS


@click.command(
    epilog="Documents: "
    + "; ".join(f"{name} ({document.printed_by})" for name, document in DOCUMENTS.items())
)
@click.argument("name", metavar="[NAME]", required=False, type=click.Choice(list(DOCUMENTS)))
@click.option(
    "--discover",
    "of_discover",
    is_flag=True,
    help="The schema of discover --format json (as NAME discovery).",
)
def schema(name: str | None, of_discover: bool) -> None:
    """Print the JSON Schema of a document the CLI prints (default: the check report).

    NAME is one of the documents listed below; without it, the report that check --format json writes.
    """
    from inboxcheck._schema import schema as committed

    if of_discover and name not in (None, "discovery"):
        raise click.UsageError(f"--discover and {name} name two documents: give one")
    click.echo(json.dumps(committed("discovery" if of_discover else name or "report"), indent=2))
