"""Database sources, registered by dialect. Drivers are imported lazily, inside each
source module, so that ``sqlsnap --help`` works with only the base install."""

from __future__ import annotations

import importlib

from ..errors import MissingDriverError
from ..urls import SourceURL
from .base import Source, TableReader

__all__ = ["Source", "TableReader", "make_source"]

#: dialect -> (module, class). One module per dialect (docs/architecture.md).
_REGISTRY = {
    "postgresql": ("sqlsnap.sources.postgresql", "PostgresSource"),
    "mysql": ("sqlsnap.sources.mysql", "MySQLSource"),
    "sqlite": ("sqlsnap.sources.sqlite", "SQLiteSource"),
}

#: The install line to show when a dialect's driver is missing.
INSTALL_HINTS = {
    "postgresql": "pip install 'sqlsnap[postgresql]'  (installs psycopg)",
    "mysql": "pip install 'sqlsnap[mysql]'  (installs PyMySQL; 'sqlsnap[mysqlclient]' is faster)",
}


def make_source(url: SourceURL) -> Source:
    module_name, class_name = _REGISTRY[url.dialect]
    module = importlib.import_module(module_name)
    cls: type[Source] = getattr(module, class_name)
    return cls(url)


def missing_driver(dialect: str, exc: ImportError) -> MissingDriverError:
    return MissingDriverError(
        f"the {dialect} driver is not installed ({exc.name}); install it with: {INSTALL_HINTS[dialect]}",
        dialect=dialect,
    )
