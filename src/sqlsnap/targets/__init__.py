"""Write side per dialect ("targets"): the demo builds its database through them, and
``sqlsnap restore`` is to load snapshots through them. Never used on an export's source:
exports only ever open read-only snapshots.

One module per dialect, registered by dialect and imported on first use, so that drivers
load lazily (``sqlsnap --help`` works with the bare install)::

    with open_target("postgresql://app@db/restored") as target:
        target.create_table(table)
        target.load(table, rows)
        target.add_foreign_keys(table)
        target.commit()
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from ..urls import SourceURL, parse_url
from .base import Target
from .kinds import KINDS, column_type

__all__ = ["DIALECTS", "KINDS", "Target", "attach", "column_type", "connect_for_write", "open_target"]

#: dialect -> (module, class). DuckDB is to follow.
_REGISTRY = {
    "postgresql": ("sqlsnap.targets.postgresql", "PostgresTarget"),
    "mysql": ("sqlsnap.targets.mysql", "MySQLTarget"),
    "sqlite": ("sqlsnap.targets.sqlite", "SQLiteTarget"),
    "duckdb": ("sqlsnap.targets.duckdb", "DuckDBTarget"),
}
DIALECTS = tuple(_REGISTRY)


def target_class(dialect: str) -> type[Target]:
    try:
        module_name, class_name = _REGISTRY[dialect]
    except KeyError:
        raise UsageError(f"cannot write to {dialect} databases; use one of: {', '.join(DIALECTS)}") from None
    cls: type[Target] = getattr(importlib.import_module(module_name), class_name)
    return cls


def open_target(url: str | SourceURL, *, create: bool = True) -> Target:
    """A :class:`Target` on a new connection to ``url``, first creating its database when it
    is missing and ``create`` (a SQLite file is created by opening it)."""
    parsed = parse_url(url) if isinstance(url, str) else url
    return target_class(parsed.dialect).open(parsed, create=create)


def attach(connection: Any, dialect: str, *, where: str | None = None) -> Target:
    """A :class:`Target` over an open DB-API connection (psycopg 3, MySQLdb or PyMySQL,
    sqlite3) that the caller keeps: closing the target leaves the connection open."""
    return target_class(dialect).attach(connection, where=where)


def connect_for_write(url: str | SourceURL, *, create: bool = True) -> Any:
    """An open DB-API connection to ``url``; creates the database first if it is missing."""
    return open_target(url, create=create).connection
