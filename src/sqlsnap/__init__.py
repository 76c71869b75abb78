"""sqlsnap: full, consistent, streaming JSON snapshots of relational databases.

The library is the product; the CLI (``sqlsnap.cli``) is a thin layer over it::

    import sqlsnap
    result = sqlsnap.export("sqlite:///app.db", "app.json")
    print(result.path, result.total_rows)
"""

# First: Ctrl-C and SIGTERM while the rest imports (the sqlsnap command only; _startup.py).
from . import _startup  # noqa: F401  # isort: skip
from ._version import __version__
from .ai import query
from .errors import (
    AuthenticationError,
    ConnectError,
    Interrupted,
    MissingDriverError,
    NotFoundError,
    OutputError,
    OutputUnavailable,
    ServerUnreachable,
    SnapError,
    Transient,
    UsageError,
    VerifyError,
)
from .exporter import Export, ExportResult, TableResult, export, plan
from .inspect import InspectResult, inspect
from .options import ExportOptions, PolicyOptions, SegmentOptions
from .plan import Plan
from .plan.filters import Condition, RowFilter
from .restore import RestoreResult, restore
from .snapshot import Snapshot, VerifyResult, open_snapshot, verify

__all__ = [
    "AuthenticationError",
    "Condition",
    "ConnectError",
    "Export",
    "ExportOptions",
    "ExportResult",
    "InspectResult",
    "Interrupted",
    "MissingDriverError",
    "NotFoundError",
    "OutputError",
    "OutputUnavailable",
    "Plan",
    "PolicyOptions",
    "RestoreResult",
    "RowFilter",
    "SegmentOptions",
    "ServerUnreachable",
    "SnapError",
    "Snapshot",
    "TableResult",
    "Transient",
    "UsageError",
    "VerifyError",
    "VerifyResult",
    "__version__",
    "export",
    "inspect",
    "open_snapshot",
    "plan",
    "query",
    "restore",
    "verify",
]
