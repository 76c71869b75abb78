"""sqlsnap: full, consistent, streaming JSON snapshots of relational databases.

The library is the product; the CLI (``sqlsnap.cli``) is a thin layer over it::

    import sqlsnap
    result = sqlsnap.export("sqlite:///app.db", "app.json")
    print(result.path, result.total_rows)
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402 - __version__ first: exporter imports it
    ConnectError,
    Interrupted,
    MissingDriverError,
    NotFoundError,
    OutputError,
    SnapError,
    UsageError,
)
from .exporter import ExportResult, TableResult, export  # noqa: E402

__all__ = [
    "ConnectError",
    "ExportResult",
    "Interrupted",
    "MissingDriverError",
    "NotFoundError",
    "OutputError",
    "SnapError",
    "TableResult",
    "UsageError",
    "__version__",
    "export",
]
