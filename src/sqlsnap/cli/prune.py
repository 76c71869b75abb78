"""sqlsnap prune: delete old snapshots in a folder or bucket prefix."""

from __future__ import annotations

import json

import click

from .errors import exit_codes_epilog, run
from .options import json_option, quiet_option, s3_endpoint_option
from .output import echo_err, human_bytes


@click.command(name="prune", epilog=exit_codes_epilog())
@click.argument("prefix")
@click.option("--keep-last", "keep_last", type=click.IntRange(min=1), metavar="N",
              help="Keep the N newest snapshots whatever their age.")
@click.option("--older-than", "older_than", metavar="AGE",
              help="Delete snapshots older than AGE (30d, 12h, 2w, 1d12h), except the --keep-last newest.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@s3_endpoint_option()
@quiet_option("No summary on stderr.")
@json_option("Print what was kept and deleted as JSON on stdout.")
def prune_cmd(prefix: str, keep_last: int | None, older_than: str | None, dry_run: bool,
              s3_endpoint: str | None, quiet: bool, as_json: bool) -> None:
    """Delete old snapshots (and their .sha256 files) in a folder or bucket prefix.

    PREFIX is a folder (dumps/), a folder and name prefix (dumps/app-) or an S3 prefix
    (s3://backups/dumps/). A snapshot is kept when it is among the --keep-last newest or
    younger than --older-than; the newest is never deleted. Only files sqlsnap wrote are
    touched (a .sha256 file beside them, or sqlsnap metadata at their start).

    \b
    Examples:
      sqlsnap prune s3://backups/dumps/ --keep-last 7 --older-than 30d
      sqlsnap prune dumps/app- --keep-last 3 --dry-run
    """
    from ..prune import prune

    result = run(lambda: prune(prefix, keep_last=keep_last, older_than=older_than, dry_run=dry_run,
                               s3_endpoint=s3_endpoint))
    verb = "would delete" if dry_run else "deleted"
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        for snap in result.deleted:
            click.echo(f"{verb} {snap.name}" + (" (and its .sha256)" if snap.sidecars else ""))
    if not quiet:
        for name in result.ignored:
            echo_err(f"ignored {name}: not recognisably a sqlsnap snapshot (no .sha256 file beside it)")
        for name in result.stale:
            echo_err(f"removed {name}: a temporary left by an export that was killed")
        size = human_bytes(sum(s.size for s in result.deleted))
        echo_err(f"kept {len(result.kept)} snapshots, {verb} {len(result.deleted)} ({size})")
