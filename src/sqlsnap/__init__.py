"""sqlsnap: full, consistent, streaming JSON snapshots of relational databases.

The library is the product; the CLI (``sqlsnap.cli``) is a thin layer over it::

    import sqlsnap
    result = sqlsnap.export("sqlite:///app.db", "app.json")
    print(result.path, result.total_rows)
"""

from ._version import __version__
from .errors import (
    ConnectError,
    Interrupted,
    MissingDriverError,
    NotFoundError,
    OutputError,
    SnapError,
    UsageError,
    VerifyError,
)
from .exporter import ExportResult, TableResult, export, plan
from .plan import Plan
from .snapshot import VerifyResult, verify

__all__ = [
    "ConnectError",
    "ExportResult",
    "Interrupted",
    "MissingDriverError",
    "NotFoundError",
    "OutputError",
    "Plan",
    "SnapError",
    "TableResult",
    "UsageError",
    "VerifyError",
    "VerifyResult",
    "__version__",
    "export",
    "plan",
    "verify",
]
