"""Connections for writing (the demo database; later, restores). Never used on an export's
source: exports only ever open read-only snapshots."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from .errors import SnapError
from .sources import make_source, missing_driver
from .urls import SourceURL, mask


def _pg_connect(url: SourceURL, database: str | None = None) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise missing_driver("postgresql", exc) from None
    rest = url.raw.split("://", 1)[1]
    kwargs: dict[str, Any] = {"connect_timeout": 10}
    if database is not None:
        kwargs["dbname"] = database
    return psycopg.connect("postgresql://" + rest, **kwargs)


def connect_for_write(url: SourceURL, *, create: bool = True) -> Any:
    """An open DB-API connection to ``url``; creates the database first if it is missing."""
    if url.dialect == "sqlite":
        folder = os.path.dirname(os.path.abspath(url.database))
        if not os.path.isdir(folder):
            raise SnapError(f"folder {folder} does not exist; create it or choose another sqlite:/// path")
        return sqlite3.connect(url.database)
    if url.dialect == "postgresql":
        import psycopg

        try:
            return _pg_connect(url)
        except psycopg.OperationalError as exc:
            if not (create and "does not exist" in str(exc) and url.database):
                raise make_source_error(url, exc) from None
        with _pg_connect(url, "postgres") as admin:
            admin.autocommit = True
            admin.execute(f'CREATE DATABASE "{url.database.replace(chr(34), chr(34) * 2)}"')
        return _pg_connect(url)
    # MySQL / MariaDB: reuse the source's connection arguments, minus the read-only session.
    source: Any = make_source(url)
    args = source.connect_args()
    args.pop("conv", None)
    driver = source.driver
    try:
        return driver.connect(**args)
    except driver.Error as exc:
        if not (create and exc.args and exc.args[0] == 1049):
            raise source.translate_error(exc) from None
    database = args.pop("database")
    admin = driver.connect(**args)
    try:
        admin.cursor().execute(f"CREATE DATABASE `{database.replace('`', '``')}` CHARACTER SET utf8mb4")
    finally:
        admin.close()
    return driver.connect(database=database, **args)


def make_source_error(url: SourceURL, exc: Exception) -> SnapError:
    from .sources.postgresql import translate_error

    return translate_error(exc, mask(url.raw))
