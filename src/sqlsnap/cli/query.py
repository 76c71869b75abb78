"""sqlsnap query: read-only SQL over a snapshot, through a cached DuckDB file."""

from __future__ import annotations

import click

from .errors import exit_codes_epilog, run
from .options import cache_dir_option, identity_option, s3_endpoint_option


@click.command(name="query", epilog=exit_codes_epilog())
@click.argument("snapshot", metavar="SNAPSHOT")
@click.argument("sql", metavar="SQL")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True, help="How to print the result.")
@click.option("--max-rows", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Print at most this many rows (the result says when there were more).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Stop the query after this many seconds.")
@cache_dir_option()
@identity_option()
@s3_endpoint_option()
def query_cmd(snapshot: str, sql: str, fmt: str, max_rows: int, timeout: float, cache_dir: str | None,
              identities: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Run one read-only SQL statement (DuckDB's SQL) on a snapshot.

    The first query loads the snapshot into a DuckDB file (streamed, in bounded memory) kept
    beside it and keyed by the snapshot's SHA-256; later queries reuse it. Every table of
    the snapshot is a table; _sqlsnap_tables, _sqlsnap_columns (types, and which columns are
    masked, hashed or left out), _sqlsnap_foreign_keys and _sqlsnap_metadata describe them.
    Only SELECT, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN run; files, extensions and settings
    are out of reach (see docs/ai.md).

    \b
    Examples:
      sqlsnap query app.json.zst "select severity, count(*) from incidents group by 1 order by 2 desc"
      sqlsnap query app.json.zst "show tables" --format markdown
      sqlsnap query s3://backups/app.json.zst "select * from _sqlsnap_columns" --format csv
    """
    from ..ai.query import max_chars_for, query, render

    result = run(lambda: query(snapshot, sql, max_rows=max_rows, timeout=timeout, cache_dir=cache_dir,
                               identities=identities, s3_endpoint=s3_endpoint))
    click.echo(render(result, fmt, max_chars=max_chars_for(max_rows)))
