"""The command line: parse options, call one library function, turn errors into one line.

Data goes to stdout only when asked (``-o -`` or ``--json``); progress, warnings and the
closing summary go to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import __version__
from .errors import EXIT_CODES, SnapError, UsageError
from .exporter import DEFAULT_JOBS, ExportResult, export
from .schema import Table
from .urls import mask, parse_url

EXIT_CODES_HELP = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class PlainProgress:
    """One line per finished table: for logs and pipes, where redrawn bars are noise."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.lock = threading.Lock()

    def start(self, tables: Sequence[Table]) -> None:
        self.echo(f"exporting {len(tables)} tables")

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        pass

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        with self.lock:
            self.echo(f"  {table}: {rows:,} rows, {_human_bytes(nbytes)}")

    def finish(self) -> None:
        pass


class BarProgress:
    """A rich progress bar per table, on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("{task.completed:>12,.0f} rows"),
            TextColumn("{task.fields[size]:>10}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.bytes: dict[str, int] = {}
        self.estimates: dict[str, int | None] = {}

    def start(self, tables: Sequence[Table]) -> None:
        self.estimates = {t.name: t.estimated_rows for t in tables}
        self.progress.start()

    def _task(self, table: str) -> Any:
        if table not in self.tasks:
            self.bytes[table] = 0
            self.tasks[table] = self.progress.add_task(
                table, total=self.estimates.get(table) or None, size="")
        return self.tasks[table]

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        task = self._task(table)
        self.bytes[table] += nbytes
        self.progress.update(task, advance=rows, size=_human_bytes(self.bytes[table]))

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        task = self._task(table)
        self.progress.update(task, total=rows, completed=rows, size=_human_bytes(nbytes))

    def finish(self) -> None:
        self.progress.stop()


def _echo_err(text: str) -> None:
    click.echo(text, err=True)


def _make_progress(quiet: bool) -> Any:
    if quiet:
        return None
    return BarProgress() if sys.stderr.isatty() else PlainProgress(_echo_err)


def _print_summary(result: ExportResult) -> None:
    s = result.summary()
    where = "standard output" if result.path == "-" else result.path
    _echo_err(
        f"exported {s['tables']} tables, {s['rows']:,} rows, {_human_bytes(s['bytes'])} "
        f"in {s['seconds']:.1f} s to {where}"
    )


def _run(fn: Callable[[], Any]) -> Any:
    """Call the library; turn its errors into ``Error: ...`` and the documented exit code."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return fn()
    except SnapError as exc:
        _echo_err(f"Error: {mask(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _echo_err("Error: interrupted; the export was abandoned and no file was left behind")
        sys.exit(130)


def _exit_codes_epilog() -> str:
    return "\b\nExit codes:\n" + EXIT_CODES_HELP


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sqlsnap")
def main() -> None:
    """Full, consistent, streaming JSON snapshots of PostgreSQL, MySQL/MariaDB and SQLite.

    \b
    Start with:  sqlsnap demo
    Then:        sqlsnap export postgresql://user@host/db -o db.json
    """


@main.command(name="export", epilog=_exit_codes_epilog())
@click.argument("source")
@click.option("-o", "--output", "output", metavar="PATH",
              help="File to write ('-' for stdout; a folder with --format jsonl). "
                   "Default: <database>-export-<UTC time>.json in the current folder.")
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl"]), default="json", show_default=True,
              help="json: one document. jsonl: a folder with <table>.jsonl files and metadata.json.")
@click.option("--compress", type=click.Choice(["zstd", "gzip", "none"]),
              help="Compression; default from the output suffix (.zst, .gz), else none.")
@click.option("--schema", "schemas", multiple=True, metavar="NAME",
              help="PostgreSQL schema to export (repeatable). Default: public.")
@click.option("--tables", "tables", multiple=True, metavar="GLOB",
              help="Export only tables matching this glob (repeatable).")
@click.option("--exclude-tables", "exclude_tables", multiple=True, metavar="GLOB",
              help="Leave out tables matching this glob (repeatable), e.g. 'debug_*'.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help=f"Tables read in parallel (PostgreSQL only). Default: {DEFAULT_JOBS} (cores, at most 4).")
@click.option("--by", "exported_by", metavar="NAME", help="Recorded as exported_by. Default: the OS user.")
@click.option("--environment", metavar="NAME", envvar="SQLSNAP_ENVIRONMENT",
              help="Recorded as environment, e.g. production. Env: SQLSNAP_ENVIRONMENT.")
@click.option("--no-server-json", is_flag=True,
              help="PostgreSQL: encode rows in Python instead of having the server build JSON "
                   "(same bytes, slower; for servers where COPY is not allowed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def export_cmd(source: str, output: str | None, fmt: str, compress: str | None, schemas: tuple[str, ...],
               tables: tuple[str, ...], exclude_tables: tuple[str, ...], jobs: int | None,
               exported_by: str | None, environment: str | None, no_server_json: bool, quiet: bool,
               as_json: bool) -> None:
    """Export every table of SOURCE to one JSON document (or JSON Lines).

    SOURCE is a database URL: postgresql://user@host:5432/db, mysql://user@host:3306/db
    (MySQL and MariaDB) or sqlite:///path/to/file.db. Passwords may also come from
    PGPASSWORD, ~/.pgpass or MYSQL_PWD; they are never printed.

    \b
    Examples:
      sqlsnap export sqlite:///app.db -o app.json
      sqlsnap export postgresql://app@db.internal/app --exclude-tables 'debug_*' -o app.json.zst
      sqlsnap export mysql://root@127.0.0.1:3306/shop --format jsonl -o shop/
      sqlsnap export postgresql:///app -o - | jq '.metadata.total_rows'
    """

    def run() -> ExportResult:
        if as_json and output == "-":
            raise UsageError("--json prints the summary on stdout, where -o - writes the data; "
                             "choose one")
        return export(
            source, output, format=fmt, compress=compress, schemas=schemas or None,
            tables=tables or None, exclude_tables=exclude_tables or None, jobs=jobs,
            exported_by=exported_by, environment=environment, server_json=not no_server_json,
            progress=_make_progress(quiet),
        )

    result = _run(run)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    elif not quiet:
        _print_summary(result)


@main.command(epilog=_exit_codes_epilog())
@click.option("--target", metavar="URL", default="sqlite:///sqlsnap-demo.db", show_default=True,
              help="Where to build the sample database (created if missing; the demo's own tables "
                   "are replaced).")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="1 is a few thousand rows; 100 is about a million rows (about 1 GB of JSON).")
@click.option("--no-export", is_flag=True, help="Only build the database.")
@click.option("-o", "--output", "output", metavar="PATH",
              help="Where to export (default: <database>-export-<UTC time>.json here).")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def demo(target: str, scale: int, no_export: bool, output: str | None, quiet: bool) -> None:
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
    from . import demo as demo_db
    from .targets import connect_for_write

    def build() -> dict[str, int]:
        url = parse_url(target)
        started = time.monotonic()
        conn = connect_for_write(url)
        try:
            counts = demo_db.build(
                conn, url.dialect, scale,
                progress=None if quiet else (lambda t, n: _echo_err(f"  {t}: {n:,} rows")),
            )
        finally:
            conn.close()
        if not quiet:
            _echo_err(f"built {mask(target)}: {len(counts)} tables, {sum(counts.values()):,} rows "
                      f"in {time.monotonic() - started:.1f} s")
        return counts

    _run(build)
    if no_export:
        return
    result = _run(lambda: export(target, output, progress=_make_progress(quiet)))
    _print_summary(result)
    shown = mask(target)
    path = result.path
    _echo_err(
        "\nNext, try:\n"
        f"  jq '.metadata.tables | map_values(.rows)' {path}\n"
        f"  sqlsnap export {shown} --exclude-tables 'debug_*' -o demo.json.zst\n"
        f"  sqlsnap export {shown} --format jsonl -o demo-jsonl/\n"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
