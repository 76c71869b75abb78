"""sqlsnap plan: what an export with the same options would write, from the catalog only."""

from __future__ import annotations

import json
from typing import Any

import click

from .errors import exit_codes_epilog, run
from .options import (
    json_option,
    policy_kwargs,
    policy_options,
    segment_kwargs,
    segment_options,
    table_kwargs,
    table_options,
)


@click.command(name="plan", epilog=exit_codes_epilog())
@click.argument("source")
@table_options
@segment_options
@policy_options
@json_option("Print the plan as JSON on stdout.")
def plan_cmd(source: str, schemas: tuple[str, ...], tables: tuple[str, ...], exclude_tables: tuple[str, ...],
             as_json: bool, **policy_opts: Any) -> None:
    """Show what `sqlsnap export` would write, without exporting anything.

    Reads only the database's catalog (and, for a segment, counts its rows per table and
    tells which foreign key reached each table): every table that will be exported with its estimated
    rows, the columns kept, the rule on each masked column, the tables and columns left out
    and why, and the security notices that apply. `sqlsnap export` with the same options
    follows exactly this plan.

    \b
    Examples:
      sqlsnap plan sqlite:///sqlsnap-demo.db
      sqlsnap plan postgresql:///app --anonymize --exclude-tables 'debug_*'
      sqlsnap plan postgresql:///app --policy sqlsnap.toml --json | jq '.notices'
      sqlsnap plan postgresql:///app --where 'companies.id = 42'
    """
    from ..exporter import plan

    # --json also silences the "using policy ./sqlsnap.toml" line on stderr, as -q does for export.
    segment = run(lambda: segment_kwargs(policy_opts))
    result = run(lambda: plan(source, **table_kwargs(schemas, tables, exclude_tables), **segment,
                              **policy_kwargs(policy_opts, as_json)))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.render(), nl=False)
