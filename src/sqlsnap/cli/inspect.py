"""sqlsnap inspect: what is in a snapshot, and what looks wrong."""

from __future__ import annotations

import json

import click

from .errors import exit_codes_epilog, run
from .options import identity_option, s3_endpoint_option


@click.command(name="inspect", epilog=exit_codes_epilog())
@click.argument("snapshot", metavar="SNAPSHOT")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True,
              help="text: for a terminal; markdown: a data dictionary to hand to an analyst or an AI "
                   "assistant; json: for programs.")
@identity_option()
@s3_endpoint_option()
def inspect_cmd(snapshot: str, fmt: str, identities: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Describe what is in a snapshot, and what looks wrong.

    Reads the snapshot once (a document or JSON Lines folder, compressed, encrypted, local or
    s3://), in bounded memory except for the referenced keys of the orphan check. Prints per
    table the rows and size; per column the null share, distinct count (exact up to 10,000,
    then estimated, shown with ~), min and max of numbers and dates, the most common values of
    low-cardinality columns and the longest text; orphaned foreign-key values with examples;
    the foreign-key tree from the root tables; empty tables and columns; and what the
    metadata says was left out or masked. Values of masked columns are never shown.

    \b
    Examples:
      sqlsnap inspect app.json
      sqlsnap inspect app.json --format markdown > APP-DATA.md
      sqlsnap inspect s3://backups/dumps/app.json.zst.age --identity key.txt --format json
    """
    from ..inspect import inspect

    result = run(lambda: inspect(snapshot, identities=identities, s3_endpoint=s3_endpoint))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif fmt == "markdown":
        click.echo(result.to_markdown(), nl=False)
    else:
        click.echo(result.to_text(), nl=False)
