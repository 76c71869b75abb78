"""The command line: parse options, call one library function, turn errors into one line.

Data goes to stdout only when asked (``-o -`` or ``--json``); progress, warnings and the
closing summary go to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from ._version import __version__
from .errors import EXIT_CODES, SnapError, UsageError
from .exporter import ExportResult, export
from .exporter.memory import keep_chunk_memory
from .model import Table
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
    if s.get("checksum_file"):
        _echo_err(f"sha256 {s['sha256']} (in {s['checksum_file']})")


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
    except Exception as exc:  # noqa: BLE001 - the last net: a bug must not print a traceback
        if os.environ.get("SQLSNAP_DEBUG") == "1":
            raise
        detail = mask(" ".join(str(exc).split()))[:300]
        _echo_err(f"Error: internal error ({type(exc).__name__}: {detail}); nothing was left under the "
                  "final name. Please report it; SQLSNAP_DEBUG=1 shows the traceback")
        sys.exit(1)


def _exit_codes_epilog() -> str:
    return "\b\nExit codes:\n" + EXIT_CODES_HELP


def _apply(options: Sequence[Callable[..., Any]], fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``fn`` with ``options``, listed in --help in the order given."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def _table_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Which tables are read, shared by export and plan."""
    return _apply([
        click.option("--schema", "schemas", multiple=True, metavar="NAME",
                     help="PostgreSQL schema to export (repeatable). Default: public."),
        click.option("--tables", "tables", multiple=True, metavar="GLOB",
                     help="Export only tables matching this glob (repeatable)."),
        click.option("--exclude-tables", "exclude_tables", multiple=True, metavar="GLOB",
                     help="Leave out tables matching this glob (repeatable), e.g. 'debug_*'."),
    ], fn)


def _policy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that decide what leaves the database, shared by export and plan."""
    options = [
        click.option("--exclude-columns", "exclude_columns", multiple=True, metavar="TABLE.COLUMN",
                     help="Leave out columns matching this glob (repeatable), e.g. 'users.ip_address' "
                          "or '*.notes'."),
        click.option("--include-secret", "include_secrets", multiple=True, metavar="TABLE.COLUMN",
                     help="Export this column although the built-in deny-list matches it (exact name; "
                          "repeatable). Prints a warning."),
        click.option("--anonymize", is_flag=True,
                     help="Apply the built-in PII preset: fake names and emails, mask phones and IPs, "
                          "birth dates to the year... (docs/policy.md); the policy file overrides it."),
        click.option("--policy", "policy", metavar="FILE",
                     help="Policy file (TOML) with per-column rules. Default: ./sqlsnap.toml if present."),
        click.option("--no-policy", is_flag=True, help="Ignore ./sqlsnap.toml."),
        click.option("--hash-key-file", "hash_key_file", metavar="FILE",
                     help="Key of hash, fake and shift-dates. Default: $SQLSNAP_HASH_KEY, then the "
                          "policy's hash_key_file."),
    ]
    return _apply(options, fn)


def _policy_kwargs(opts: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """The library arguments for ``_policy_options``; finds ./sqlsnap.toml."""
    import os

    from .policy import DEFAULT_POLICY_FILE

    policy = opts["policy"]
    if policy is None and not opts["no_policy"] and os.path.isfile(DEFAULT_POLICY_FILE):
        policy = DEFAULT_POLICY_FILE
        if not quiet:
            _echo_err(f"using policy {DEFAULT_POLICY_FILE} (--no-policy to ignore it)")
    return {
        "exclude_columns": opts["exclude_columns"] or None,
        "include_secrets": opts["include_secrets"] or None,
        "anonymize": opts["anonymize"],
        "policy": policy,
        "hash_key_file": opts["hash_key_file"],
    }


def _warn_plan(plan: Any) -> None:
    """Security warnings an export must not start silently: secrets included, a throwaway key."""
    for notice in plan.notices:
        if notice.code in ("secret-included", "ephemeral-key"):
            _echo_err(f"Warning: {notice.message}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sqlsnap")
def main() -> None:
    """Full, consistent, streaming JSON snapshots of PostgreSQL, MySQL/MariaDB and SQLite.

    \b
    Start with:  sqlsnap demo
    Then:        sqlsnap export postgresql://user@host/db -o db.json
    """
    keep_chunk_memory()


@main.command(name="export", epilog=_exit_codes_epilog())
@click.argument("source")
@click.option("-o", "--output", "output", metavar="PATH",
              help="File to write ('-' for stdout; a folder with --format jsonl), or s3://bucket/key. "
                   "May hold {database}, {timestamp}, {environment}, {export_type}. "
                   "Default: <database>-export-<UTC time>.json in the current folder.")
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl"]), default="json", show_default=True,
              help="json: one document. jsonl: a folder with <table>.jsonl files and metadata.json.")
@click.option("--compress", type=click.Choice(["zstd", "gzip", "none"]),
              help="Compression; default from the output suffix (.zst, .gz), else none.")
@_table_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Readers side by side on one snapshot (PostgreSQL only): tables, and page ranges of "
                   "large tables. Default: one per core, at most 4.")
@click.option("--by", "exported_by", metavar="NAME", help="Recorded as exported_by. Default: the OS user.")
@click.option("--environment", metavar="NAME", envvar="SQLSNAP_ENVIRONMENT",
              help="Recorded as environment, e.g. production. Env: SQLSNAP_ENVIRONMENT.")
@click.option("--no-server-json", is_flag=True,
              help="PostgreSQL: encode rows in Python instead of having the server build JSON "
                   "(same bytes, slower; for servers where COPY is not allowed).")
@click.option("--encrypt-to", "encrypt_to", multiple=True, metavar="RECIPIENT",
              help="Encrypt with age to this public key (age1..., ssh-ed25519 ...); repeatable. "
                   "Compression comes first; name the file .age.")
@click.option("--encrypt-to-file", "encrypt_to_file", multiple=True, metavar="FILE",
              help="Encrypt to the recipients listed in FILE, one per line (as age -R); repeatable.")
@click.option("--s3-endpoint", "s3_endpoint", metavar="URL",
              help="S3-compatible endpoint (MinIO, R2, Supabase Storage...). Env: AWS_ENDPOINT_URL. "
                   "Credentials: the usual AWS variables and files.")
@_policy_options
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def export_cmd(source: str, output: str | None, fmt: str, compress: str | None, schemas: tuple[str, ...],
               tables: tuple[str, ...], exclude_tables: tuple[str, ...], jobs: int | None,
               exported_by: str | None, environment: str | None, no_server_json: bool,
               encrypt_to: tuple[str, ...], encrypt_to_file: tuple[str, ...], s3_endpoint: str | None,
               quiet: bool, as_json: bool, **policy_opts: Any) -> None:
    """Export every table of SOURCE to one JSON document (or JSON Lines).

    SOURCE is a database URL: postgresql://user@host:5432/db, mysql://user@host:3306/db
    (MySQL and MariaDB) or sqlite:///path/to/file.db. Passwords may also come from
    PGPASSWORD, ~/.pgpass or MYSQL_PWD; they are never printed.

    Secret-looking columns (passwords, tokens, API keys...) are left out unless named with
    --include-secret. The export follows exactly what `sqlsnap plan` shows for the same
    options (docs/policy.md).

    \b
    Examples:
      sqlsnap export sqlite:///app.db -o app.json
      sqlsnap export postgresql://app@db.internal/app --exclude-tables 'debug_*' -o app.json.zst
      sqlsnap export mysql://root@127.0.0.1:3306/shop --format jsonl -o shop/
      sqlsnap export postgresql:///app -o - | jq '.metadata.total_rows'
      sqlsnap export postgresql:///app -o 's3://backups/{database}-{timestamp}.json.zst'
      sqlsnap export postgresql:///app -o app.json.zst.age --encrypt-to age1...
      sqlsnap export postgresql:///app --anonymize --exclude-columns '*.notes' -o app.json
    """

    def run() -> ExportResult:
        if as_json and output == "-":
            raise UsageError("--json prints the summary on stdout, where -o - writes the data; "
                             "choose one")
        return export(
            source, output, format=fmt, compress=compress, schemas=schemas or None,
            tables=tables or None, exclude_tables=exclude_tables or None, jobs=jobs,
            exported_by=exported_by, environment=environment, server_json=not no_server_json,
            progress=_make_progress(quiet), encrypt_to=encrypt_to, encrypt_to_file=encrypt_to_file,
            s3_endpoint=s3_endpoint, on_plan=_warn_plan, **_policy_kwargs(policy_opts, quiet),
        )

    result = _run(run)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    elif not quiet:
        _print_summary(result)


@main.command(name="plan", epilog=_exit_codes_epilog())
@click.argument("source")
@_table_options
@_policy_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
def plan_cmd(source: str, schemas: tuple[str, ...], tables: tuple[str, ...], exclude_tables: tuple[str, ...],
             as_json: bool, **policy_opts: Any) -> None:
    """Show what `sqlsnap export` would write, without exporting anything.

    Reads only the database's catalog: every table that will be exported with its estimated
    rows, the columns kept, the rule on each masked column, the tables and columns left out
    and why, and the security notices that apply. `sqlsnap export` with the same options
    follows exactly this plan.

    \b
    Examples:
      sqlsnap plan sqlite:///sqlsnap-demo.db
      sqlsnap plan postgresql:///app --anonymize --exclude-tables 'debug_*'
      sqlsnap plan postgresql:///app --policy sqlsnap.toml --json | jq '.notices'
    """
    from .exporter import plan
    from .plan import Plan

    def run() -> Plan:
        return plan(source, schemas=schemas or None, tables=tables or None,
                    exclude_tables=exclude_tables or None, **_policy_kwargs(policy_opts, as_json))

    result = _run(run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.render(), nl=False)


@main.command(epilog=_exit_codes_epilog())
@click.option("--target", metavar="URL", default="sqlite:///sqlsnap-demo.db", show_default=True,
              help="Where to build the sample database (created if missing; the demo's own tables "
                   "are replaced).")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="1 is a few thousand rows; 100 is about a million rows (about 1 GB of JSON).")
@click.option("--no-export", is_flag=True, help="Only build the database.")
@click.option("-o", "--output", "output", metavar="PATH",
              help="Where to export (default: <database>-export-<UTC time>.json here).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on stderr.")
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
            _echo_err(f"built {mask(target)}: {len(counts)} tables, {sum(counts.values()):,} rows "
                      f"in {time.monotonic() - started:.1f} s")
        return counts

    _run(build)
    if no_export:
        return
    result = _run(lambda: export(target, output, progress=_make_progress(quiet)))
    if quiet:
        return
    _print_summary(result)
    shown = mask(target)
    path = result.path
    _echo_err(
        "\nNext, try:\n"
        f"  jq '.metadata.tables | map_values(.rows)' {path}\n"
        f"  sqlsnap export {shown} --exclude-tables 'debug_*' -o demo.json.zst\n"
        f"  sqlsnap export {shown} --format jsonl -o demo-jsonl/\n"
        f"  sqlsnap plan {shown} --anonymize --exclude-tables 'debug_*'\n"
    )


_S3_ENDPOINT_HELP = "S3-compatible endpoint for s3:// URLs (MinIO, R2, Supabase...). Env: AWS_ENDPOINT_URL."


@main.command(name="verify", epilog=_exit_codes_epilog())
@click.argument("location", metavar="PATH_OR_URL")
@click.option("-i", "--identity", "identities", multiple=True, metavar="FILE",
              help="age identity file (from age-keygen) to decrypt an encrypted snapshot; repeatable. "
                   "Without it, an encrypted file is checked against its .sha256 file only.")
@click.option("--integrity", is_flag=True,
              help="Also check that every foreign key value has its parent row in the snapshot, and "
                   "list the dangling ones (keeps the referenced keys in memory).")
@click.option("--s3-endpoint", "s3_endpoint", metavar="URL", help=_S3_ENDPOINT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the snapshot is OK.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def verify_cmd(location: str, identities: tuple[str, ...], integrity: bool, s3_endpoint: str | None,
               quiet: bool, as_json: bool) -> None:
    """Check that a snapshot is whole and matches its metadata.

    Streams the file (or s3:// object, or JSON Lines folder) in constant memory,
    decompressing and, with --identity, decrypting it; checks the layout, that every row is
    valid JSON, the row counts against the metadata, each table's SHA-256 against the
    document's checksums, and the file against its .sha256 file. Prints OK, or the first
    problem with its table and line (exit 7).

    \b
    Examples:
      sqlsnap verify app.json.zst
      sqlsnap verify app.json.zst.age --identity key.txt --integrity
      sqlsnap verify s3://backups/dumps/app-2026-11-22T14-30-00Z.json.zst
    """
    from .errors import VerifyError
    from .snapshot import verify

    def run() -> None:
        result = verify(location, identities=identities, integrity=integrity, s3_endpoint=s3_endpoint)
        if as_json:
            click.echo(json.dumps(result.summary(), indent=2))
        if not result.ok:
            if not as_json:
                for item in result.dangling:
                    click.echo(f"dangling: {item}")
                if result.dangling_total > len(result.dangling):
                    click.echo(f"... and {result.dangling_total - len(result.dangling):,} more")
            raise VerifyError(f"{location}: {result.dangling_total:,} foreign key values have no parent "
                              "row in the snapshot", path=location)
        if as_json or quiet:
            return
        checksum = (f"sha256 matches {result.checksum_file}" if result.checksum_file
                    else "no .sha256 file beside it")
        if not result.content_checked:
            click.echo(f"OK (checksum only) {location}: {checksum}; it is encrypted: give --identity to "
                       "check its content")
            return
        fks = "; foreign keys: no dangling value" if result.integrity_checked else ""
        click.echo(f"OK {location}: {len(result.tables)} tables, {result.total_rows:,} rows, matching their "
                   f"counts and checksums; {checksum}{fks}")

    _run(run)


@main.command(name="prune", epilog=_exit_codes_epilog())
@click.argument("prefix")
@click.option("--keep-last", "keep_last", type=click.IntRange(min=1), metavar="N",
              help="Keep the N newest snapshots whatever their age.")
@click.option("--older-than", "older_than", metavar="AGE",
              help="Delete snapshots older than AGE (30d, 12h, 2w, 1d12h), except the --keep-last newest.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--s3-endpoint", "s3_endpoint", metavar="URL", help=_S3_ENDPOINT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print what was kept and deleted as JSON on stdout.")
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
    from .prune import prune

    result = _run(lambda: prune(prefix, keep_last=keep_last, older_than=older_than, dry_run=dry_run,
                                s3_endpoint=s3_endpoint))
    verb = "would delete" if dry_run else "deleted"
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        for snap in result.deleted:
            click.echo(f"{verb} {snap.name}" + (" (and its .sha256)" if snap.sidecars else ""))
    if not quiet:
        for name in result.ignored:
            _echo_err(f"ignored {name}: not recognisably a sqlsnap snapshot (no .sha256 file beside it)")
        size = _human_bytes(sum(s.size for s in result.deleted))
        _echo_err(f"kept {len(result.kept)} snapshots, {verb} {len(result.deleted)} ({size})")


@main.command(name="decrypt", epilog=_exit_codes_epilog())
@click.argument("source", metavar="PATH_OR_URL")
@click.option("-i", "--identity", "identities", multiple=True, required=True, metavar="FILE",
              help="age identity file (from age-keygen) or OpenSSH private key; repeatable.")
@click.option("-o", "--output", "output", metavar="PATH",
              help="Where to write ('-' for stdout). Default: the name without .age, in the current folder.")
@click.option("--s3-endpoint", "s3_endpoint", metavar="URL", help=_S3_ENDPOINT_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def decrypt_cmd(source: str, identities: tuple[str, ...], output: str | None, s3_endpoint: str | None,
                quiet: bool) -> None:
    """Decrypt an age-encrypted snapshot (the same as age -d -i key.txt).

    The result is still compressed if the snapshot was (.json.zst): decryption undoes only
    the encryption. It appears under its name only when complete and authenticated.

    \b
    Examples:
      sqlsnap decrypt app.json.zst.age -i key.txt
      sqlsnap decrypt s3://backups/app.json.zst.age -i key.txt -o - | zstd -d | jq .metadata
    """
    from .crypto import decrypt

    written = _run(lambda: decrypt(source, output, identities, s3_endpoint=s3_endpoint))
    if not quiet and written != "-":
        _echo_err(f"decrypted {source} to {written}")


if __name__ == "__main__":  # pragma: no cover
    main()
