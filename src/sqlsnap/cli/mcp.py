"""sqlsnap mcp: serve a snapshot to an AI assistant over the Model Context Protocol (stdio)."""

from __future__ import annotations

import click

from .errors import exit_codes_epilog, run
from .options import cache_dir_option, identity_option, s3_endpoint_option


@click.command(name="mcp", epilog=exit_codes_epilog())
@click.argument("snapshot", metavar="SNAPSHOT")
@click.option("--max-rows", type=click.IntRange(min=1, max=10_000), default=200, show_default=True,
              help="Most rows in one answer (each answer is also cut at 40,000 characters).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Stop a query after this many seconds.")
@cache_dir_option()
@identity_option()
@s3_endpoint_option()
def mcp_cmd(snapshot: str, max_rows: int, timeout: float, cache_dir: str | None, identities: tuple[str, ...],
            s3_endpoint: str | None) -> None:
    """Serve a snapshot to an AI assistant: an MCP server on stdin/stdout.

    Loads the snapshot into a cached DuckDB file first (see sqlsnap query), then answers an
    MCP client with six read-only tools (list_tables, describe_table, sample_rows, query,
    find_orphans, relationships) and two resources (sqlsnap://metadata,
    sqlsnap://dictionary). The assistant can read the snapshot's tables and nothing else:
    no files, network, extensions or settings, one SELECT per call, capped answers, a time
    limit per query. Set-up for MCP clients: docs/ai.md.

    \b
    Examples:
      sqlsnap mcp app.json.zst
      claude mcp add app-snapshot -- sqlsnap mcp /data/app.json.zst
    """
    from ..ai.server import serve

    run(lambda: serve(snapshot, cache_dir=cache_dir, identities=identities, s3_endpoint=s3_endpoint,
                      max_rows=max_rows, timeout=timeout))
