"""Options shared by several commands, and the library arguments they stand for."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import click

from .output import echo_err

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

S3_ENDPOINT_HELP = "S3-compatible endpoint for s3:// URLs (MinIO, R2, Supabase...). Env: AWS_ENDPOINT_URL."


def apply(options: Sequence[Decorator], fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``fn`` with ``options``, listed in --help in the order given."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def table_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Which tables are read, shared by export and plan."""
    return apply([
        click.option("--schema", "schemas", multiple=True, metavar="NAME",
                     help="PostgreSQL schema to export (repeatable). Default: public."),
        click.option("--tables", "tables", multiple=True, metavar="GLOB",
                     help="Export only tables matching this glob (repeatable; several separated by commas: "
                          "incidents,participants; [,] matches a comma in a name)."),
        click.option("--exclude-tables", "exclude_tables", multiple=True, metavar="GLOB",
                     help="Leave out tables matching this glob (repeatable, or separated by commas), "
                          "e.g. 'debug_*'."),
    ], fn)


def table_kwargs(schemas: tuple[str, ...], tables: tuple[str, ...],
                 exclude_tables: tuple[str, ...]) -> dict[str, Any]:
    """The library arguments for ``table_options`` (an option not given is None)."""
    return {"schemas": schemas or None, "tables": split_globs(tables) or None,
            "exclude_tables": split_globs(exclude_tables) or None}


def split_globs(given: tuple[str, ...]) -> list[str]:
    """Each value as the comma-separated globs it lists (``--tables incidents,participants``);
    a comma inside ``[...]`` belongs to the glob, so ``[,]`` matches a comma in a name."""
    globs: list[str] = []
    for value in given:
        depth, start = 0, 0
        for i, ch in enumerate(value):
            if ch == "[":
                depth = 1
            elif ch == "]":
                depth = 0
            elif ch == "," and not depth:
                globs.append(value[start:i])
                start = i + 1
        globs.append(value[start:])
    return [g.strip() for g in globs if g.strip()]


def segment_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Which rows (a segment, docs/segments.md), shared by export and plan."""
    return apply([
        click.option("--where", "where", multiple=True, metavar="'TABLE.COLUMN OP VALUE'",
                     help="Seed rows of a segment, e.g. 'companies.id = 42' (repeatable; AND-ed on one "
                          "table). OP: = != < <= > >= in (...) between ... and ... is null, is not null. "
                          "The export holds the seeds, every row that references them (transitively) "
                          "and every row they reference (docs/segments.md)."),
        click.option("--no-closure", is_flag=True,
                     help="Apply each --where to its own table only and export the other tables whole "
                          "(the result may hold keys without their rows)."),
        click.option("--since", metavar="DATE",
                     help="A date range's start (2026-10-01 or 2026-10-01T12:00:00): rows of each table's "
                          "created_at (or --date-column) from then, and the rows they reference."),
        click.option("--until", metavar="DATE", help="A date range's end, excluded."),
        click.option("--date-column", "date_columns", multiple=True, metavar="TABLE.COLUMN",
                     help="The date column of --since/--until (repeatable); only these tables are "
                          "filtered. Default: every table's created_at."),
        click.option("--sample", metavar="PERCENT",
                     help="A sample of the seed rows (those of --where, else of a date range or --closed, "
                          "else of --tables, else of the tables that reference no other), e.g. 5%, closed "
                          "as its seeds are."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N seed rows."),
        click.option("--seed", type=int, metavar="N",
                     help="Which rows --sample and --limit pick: the same seed picks the same rows. "
                          "Default 0."),
        click.option("--segment-file", "segment_file", metavar="FILE",
                     help="TOML with a [segment] table: foreign_keys the schema lacks (also inside JSON "
                          "values, or polymorphic), skip (foreign keys not to follow, TABLE.COLUMN), lookups "
                          "(tables taken whole), caps (children per parent). Replaces the policy file's "
                          "[segment]. docs/segments.md."),
        click.option("--closed", is_flag=True,
                     help="With --tables: those tables whole, and every row they reference (from any "
                          "table), so that no key dangles."),
    ], fn)


def segment_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The library arguments for ``segment_options``: the --where texts parsed (never pasted
    into SQL), a closure unless --no-closure."""
    from ..plan.where import parse_where

    where = parse_where(opts.pop("where"))
    no_closure = opts.pop("no_closure")
    return {"where": where or None, "closure": bool(where) and not no_closure, "since": opts.pop("since"),
            "until": opts.pop("until"), "date_columns": opts.pop("date_columns"),
            "closed": opts.pop("closed"), "sample": opts.pop("sample"), "limit": opts.pop("limit"),
            "seed": opts.pop("seed"), "segment_file": opts.pop("segment_file")}


def policy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that decide what leaves the database, shared by export and plan."""
    return apply([
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
    ], fn)


def policy_kwargs(opts: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """The library arguments for ``policy_options``; finds ./sqlsnap.toml."""
    from ..policy import DEFAULT_POLICY_FILE

    policy = opts["policy"]
    if policy is None and not opts["no_policy"] and os.path.isfile(DEFAULT_POLICY_FILE):
        policy = DEFAULT_POLICY_FILE
        if not quiet:
            echo_err(f"using policy {DEFAULT_POLICY_FILE} (--no-policy to ignore it)")
    return {
        "exclude_columns": opts["exclude_columns"] or None,
        "include_secrets": opts["include_secrets"] or None,
        "anonymize": opts["anonymize"],
        "policy": policy,
        "hash_key_file": opts["hash_key_file"],
    }


def s3_endpoint_option(help: str = S3_ENDPOINT_HELP) -> Decorator:
    return click.option("--s3-endpoint", "s3_endpoint", metavar="URL", help=help)


IDENTITY_HELP = "age identity file (from age-keygen) to decrypt an encrypted snapshot; repeatable."


def identity_option(help: str = IDENTITY_HELP) -> Decorator:
    """-i/--identity (``identities``), for the commands that read a snapshot."""
    return click.option("-i", "--identity", "identities", multiple=True, metavar="FILE", help=help)


def cache_dir_option() -> Decorator:
    """--cache-dir, for the commands that load a snapshot into DuckDB (query, mcp)."""
    return click.option("--cache-dir", metavar="FOLDER",
                        help="Where to keep the DuckDB file (default: beside a local snapshot when that "
                             "folder is writable, else $SQLSNAP_CACHE_DIR or ~/.cache/sqlsnap).")


def quiet_option(help: str) -> Decorator:
    """-q/--quiet; each command says what it leaves out."""
    return click.option("-q", "--quiet", is_flag=True, help=help)


def json_option(help: str) -> Decorator:
    """--json (``as_json``); each command says what it prints."""
    return click.option("--json", "as_json", is_flag=True, help=help)
