"""sqlsnap restore: load a snapshot into a database."""

from __future__ import annotations

import json

import click

from .errors import exit_codes_epilog, run
from .options import identity_option, json_option, quiet_option, s3_endpoint_option, split_globs
from .output import echo_err


@click.command(name="restore", epilog=exit_codes_epilog())
@click.argument("snapshot", metavar="SNAPSHOT")
@click.argument("target_url", metavar="TARGET_URL")
@click.option("-t", "--tables", "tables", multiple=True, metavar="GLOB",
              help="Restore only the tables matching GLOB; repeatable, or separated by commas.")
@click.option("-T", "--exclude-tables", "exclude_tables", multiple=True, metavar="GLOB",
              help="Leave out the tables matching GLOB; repeatable, or separated by commas.")
@click.option("--replace", is_flag=True,
              help="Drop the target's tables that the snapshot also holds, and create them again.")
@click.option("--append", is_flag=True, help="Add the rows to the target's tables that already exist.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tables loaded side by side on PostgreSQL and MySQL/MariaDB (through a staging "
                   "schema, moved into place at the end); SQLite and --append load with 1.")
@identity_option()
@s3_endpoint_option()
@quiet_option("Print nothing but errors.")
@json_option("Print the result (rows per table) as JSON on stdout.")
def restore_cmd(snapshot: str, target_url: str, tables: tuple[str, ...], exclude_tables: tuple[str, ...],
                replace: bool, append: bool, jobs: int, identities: tuple[str, ...], s3_endpoint: str | None,
                quiet: bool, as_json: bool) -> None:
    """Load a snapshot into a database (PostgreSQL, MySQL/MariaDB or SQLite).

    Streams the snapshot (a document or JSON Lines folder, compressed, encrypted, local or
    s3://), creates its tables (the source's types in the same dialect, the mapping of
    docs/restore.md in another), loads the rows by the target's bulk path, then adds the
    foreign keys, and records the snapshot in a _sqlsnap_restore table. The database is
    created when missing. A target that already holds one of the snapshot's tables is
    refused unless --replace or --append; a failure leaves the target as it was.

    \b
    Examples:
      sqlsnap restore app.json.zst postgresql:///app_copy
      sqlsnap restore app.json sqlite:///analysis.db
      sqlsnap restore s3://backups/dumps/app.json.zst.age mysql://root@127.0.0.1/copy --identity key.txt
    """
    from ..restore import restore

    def report(table: str, rows: int) -> None:
        if not quiet and not as_json:
            echo_err(f"  {table}: {rows:,} rows")

    result = run(lambda: restore(snapshot, target_url, tables=split_globs(tables) or None,
                                 exclude_tables=split_globs(exclude_tables) or None, replace=replace,
                                 append=append, identities=identities, s3_endpoint=s3_endpoint,
                                 progress=report, jobs=jobs))
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    elif not quiet:
        jobs_note = f" ({result.jobs} jobs)" if result.jobs > 1 else ""
        echo_err(f"Restored {len(result.tables)} tables, {result.total_rows:,} rows into {result.target} "
                 f"in {result.seconds:.1f} s{jobs_note}")
