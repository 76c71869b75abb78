"""sqlsnap demo: build the bundled sample database, then export it."""

from __future__ import annotations

import time

import click

from ..errors import SnapError
from ..urls import mask
from .errors import exit_codes_epilog, run
from .options import quiet_option
from .output import count, echo_err, make_progress, print_summary


def _build(target: str, scale: int, quiet: bool, replace: bool = False) -> dict[str, int]:
    """Build the sample in ``target``; its rows per table.

    Library work done here for now (connect, translate the driver's errors, close): it belongs
    in ``sqlsnap.demo``, which would let the command call one function.
    """
    from .. import demo as demo_db
    from ..targets import connect_for_write
    from ..urls import parse_url

    url = parse_url(target)
    started = time.monotonic()
    conn = connect_for_write(url)
    try:
        counts = demo_db.build(
            conn, url.dialect, scale, replace=replace,
            progress=None if quiet else (lambda t, n: echo_err(f"  {t}: {count(n, 'row')}")),
        )
    except SnapError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's own errors, at the boundary
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnapError(
            f"building the demo database in {mask(target)} failed: {mask(first)}; "
            "use an empty database for --target") from None
    finally:
        conn.close()
    if not quiet:
        echo_err(f"built {mask(target)}: {count(len(counts), 'table')}, {count(sum(counts.values()), 'row')} "
                 f"in {time.monotonic() - started:.1f} s")
    return counts


@click.command(name="demo", epilog=exit_codes_epilog())
@click.option("--target", metavar="URL", default="sqlite:///sqlsnap-demo.db", show_default=True,
              help="Where to build the sample database: created if missing; it must be empty or hold "
                   "an earlier demo, unless --replace.")
@click.option("--replace", is_flag=True,
              help="Build in a database that holds other tables: the demo's tables are dropped and "
                   "rebuilt there, others are left alone.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="1 is a few thousand rows; 100 is about a million rows (about 1 GB of JSON).")
@click.option("--no-export", is_flag=True, help="Only build the database.")
@click.option("-o", "--output", "output", metavar="PATH",
              help="Where to export (default: <database>-export-<UTC time>.json here).")
@quiet_option("Print nothing on stderr.")
def demo_cmd(target: str, scale: int, replace: bool, no_export: bool, output: str | None,
             quiet: bool) -> None:
    """Build the bundled sample database, then export it.

    The sample is a multi-tenant incident-management service: companies, sites, users with
    password hashes, sessions and OAuth tokens, incidents with multi-phase narratives, AI
    prompts and request logs, debug logs. It is deterministic: the same scale gives the
    same rows.

    \b
    Examples:
      sqlsnap demo
      sqlsnap demo --scale 100 --target postgresql:///sqlsnap_demo --no-export
    """
    from ..exporter import export

    run(lambda: _build(target, scale, quiet, replace))
    if no_export:
        return
    result = run(lambda: export(target, output, progress=make_progress(quiet)))
    if quiet:
        return
    print_summary(result)
    shown = mask(target)
    echo_err(
        "\nNext, try:\n"
        f"  jq '.metadata.tables | map_values(.rows)' {result.path}\n"
        f"  sqlsnap export {shown} --exclude-tables 'debug_*' -o demo.json.zst\n"
        f"  sqlsnap export {shown} --format jsonl -o demo-jsonl/\n"
        f"  sqlsnap plan {shown} --anonymize --exclude-tables 'debug_*'\n"
    )
