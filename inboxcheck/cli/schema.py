"""``inboxcheck schema``: the committed JSON Schema of a document the CLI prints."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--discover", "of_discover", is_flag=True, help="The schema of discover --format json instead.")
def schema(of_discover: bool) -> None:
    """Print the JSON Schema of the report that --format json writes."""
    from inboxcheck._schema import discovery_schema, report_schema

    click.echo(json.dumps(discovery_schema() if of_discover else report_schema(), indent=2))
