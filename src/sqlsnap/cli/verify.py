"""sqlsnap verify: is a snapshot whole, and does it match its metadata?"""

from __future__ import annotations

import json

import click

from ..errors import VerifyError
from .errors import exit_codes_epilog, fail, run
from .options import IDENTITY_HELP, identity_option, json_option, quiet_option, s3_endpoint_option
from .output import count


@click.command(name="verify", epilog=exit_codes_epilog())
@click.argument("location", metavar="PATH_OR_URL")
@identity_option(IDENTITY_HELP + " Without it, an encrypted file is checked against its .sha256 file only.")
@click.option("--integrity", is_flag=True,
              help="Also check that every foreign key value has its parent row in the snapshot, and "
                   "list the dangling ones (keeps the referenced keys in memory).")
@s3_endpoint_option()
@quiet_option("Print nothing when the snapshot is OK.")
@json_option("Print the result as JSON on stdout.")
def verify_cmd(location: str, identities: tuple[str, ...], integrity: bool, s3_endpoint: str | None,
               quiet: bool, as_json: bool) -> None:
    """Check that a snapshot is whole and matches its metadata.

    Streams the file (or s3:// object, or JSON Lines folder) in constant memory,
    decompressing and, with --identity, decrypting it; checks the layout, that every row is
    valid JSON, the row counts against the metadata, each table's checksum (XXH3-128) against
    the document's checksums, and the file against its .sha256 file. Prints OK, or the first
    problem with its table and line (exit 7).

    \b
    Examples:
      sqlsnap verify app.json.zst
      sqlsnap verify app.json.zst.age --identity key.txt --integrity
      sqlsnap verify s3://backups/dumps/app-2026-11-22T14-30-00Z.json.zst
    """
    from ..snapshot import verify

    result = run(lambda: verify(location, identities=identities, integrity=integrity,
                                s3_endpoint=s3_endpoint))
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    if not result.ok:
        if not as_json:
            for item in result.dangling:
                click.echo(f"dangling: {item}")
            if result.dangling_total > len(result.dangling):
                click.echo(f"... and {result.dangling_total - len(result.dangling):,} more")
        # The library reports dangling keys in the result; that they fail the check is decided here.
        fail(VerifyError(f"{location}: {result.dangling_total:,} foreign key values have no parent "
                         "row in the snapshot", path=location))
    if as_json or quiet:
        return
    checksum = (f"sha256 matches {result.checksum_file}" if result.checksum_file
                else "no .sha256 file beside it")
    if not result.content_checked:
        click.echo(f"OK (checksum only) {location}: {checksum}; it is encrypted: give --identity to "
                   "check its content")
        return
    fks = "; foreign keys: no dangling value" if result.integrity_checked else ""
    sizes = f"{count(len(result.tables), 'table')}, {count(result.total_rows, 'row')}"
    click.echo(f"OK {location}: {sizes}, matching their counts and checksums; {checksum}{fks}")
