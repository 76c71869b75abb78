"""sqlsnap export: one database to one JSON snapshot."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import UsageError
from .errors import exit_codes_epilog, fail, run
from .options import (
    json_option,
    policy_kwargs,
    policy_options,
    quiet_option,
    s3_endpoint_option,
    segment_kwargs,
    segment_options,
    table_kwargs,
    table_options,
)
from .output import echo_err, make_progress, print_summary, warn_plan


@click.command(name="export", epilog=exit_codes_epilog())
@click.argument("source")
@click.option("-o", "--output", "output", metavar="PATH",
              help="File to write ('-' for stdout; a folder with --format jsonl), or s3://bucket/key. "
                   "May hold {database}, {timestamp}, {environment}, {export_type}. "
                   "Default: <database>-export-<UTC time>.json in the current folder.")
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl"]), default="json", show_default=True,
              help="json: one document. jsonl: a folder with <table>.jsonl files and metadata.json.")
@click.option("--compress", type=click.Choice(["zstd", "gzip", "none"]),
              help="Compression; default from the output suffix (.zst, .gz), else none.")
@table_options
@segment_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Readers side by side on one snapshot (PostgreSQL only): tables, and page ranges of "
                   "large tables. Default: one per core, at most 4.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS",
              help="PostgreSQL and MySQL/MariaDB: fail the export when a table lock (held by another "
                   "session's ALTER, TRUNCATE, DROP) is not granted within SECONDS; 0 waits for ever.")
@click.option("--force", is_flag=True,
              help="Replace an existing snapshot file or object of the same name (else the export "
                   "refuses to start).")
@click.option("--by", "exported_by", metavar="NAME", help="Recorded as exported_by. Default: the OS user.")
@click.option("--environment", metavar="NAME", envvar="SQLSNAP_ENVIRONMENT",
              help="Recorded as environment, e.g. production. Env: SQLSNAP_ENVIRONMENT.")
@click.option("--no-server-json", is_flag=True,
              help="PostgreSQL: encode rows in Python instead of having the server build JSON "
                   "(same bytes, slower; for servers where COPY is not allowed).")
@click.option("--no-binary-copy", is_flag=True,
              help="PostgreSQL: have the server build each row's JSON (row_to_json) instead of "
                   "decoding binary COPY in C (same bytes, more server CPU; for comparison, or "
                   "where binary COPY is refused).")
@click.option("--encrypt-to", "encrypt_to", multiple=True, metavar="RECIPIENT",
              help="Encrypt with age to this public key (age1..., ssh-ed25519 ...); repeatable. "
                   "Compression comes first; the name must end in .age (e.g. app.json.zst.age).")
@click.option("--encrypt-to-file", "encrypt_to_file", multiple=True, metavar="FILE",
              help="Encrypt to the recipients listed in FILE, one per line (as age -R); repeatable.")
@s3_endpoint_option("S3-compatible endpoint (MinIO, R2, Supabase Storage...). Env: AWS_ENDPOINT_URL. "
                    "Credentials: the usual AWS variables and files.")
@policy_options
@quiet_option("No progress and no summary on stderr.")
@json_option("Print the summary as JSON on stdout.")
def export_cmd(source: str, output: str | None, fmt: str, compress: str | None, schemas: tuple[str, ...],
               tables: tuple[str, ...], exclude_tables: tuple[str, ...], jobs: int | None,
               lock_timeout: float, force: bool,
               exported_by: str | None, environment: str | None, no_server_json: bool,
               no_binary_copy: bool,
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
      sqlsnap export postgresql:///app --where 'companies.id = 42' -o acme.json
    """
    from ..exporter import export

    if as_json and output == "-":
        fail(UsageError("--json prints the summary on stdout, where -o - writes the data; choose one"))
    segment = run(lambda: segment_kwargs(policy_opts))
    result = run(lambda: export(
        source, output, format=fmt, compress=compress, **table_kwargs(schemas, tables, exclude_tables),
        jobs=jobs, lock_timeout=lock_timeout, force=force,
        exported_by=exported_by, environment=environment, server_json=not no_server_json,
        binary_copy=not no_binary_copy,
        progress=make_progress(quiet), encrypt_to=encrypt_to, encrypt_to_file=encrypt_to_file,
        s3_endpoint=s3_endpoint, on_plan=lambda p: warn_plan(p, quiet), **segment,
        **policy_kwargs(policy_opts, quiet),
    ))
    if not quiet:
        for notice in result.notices:
            echo_err(f"Note: {notice}")
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    elif not quiet:
        print_summary(result)
