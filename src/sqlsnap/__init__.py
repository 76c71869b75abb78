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
    VerifyError,
)
from .exporter import ExportResult, TableResult, export  # noqa: E402
from .plan import Plan, plan  # noqa: E402 - rebinds sqlsnap.plan to the function; import the module with "from sqlsnap.plan import ..."
from .verify import VerifyResult, verify  # noqa: E402 - rebinds sqlsnap.verify to the function, as plan

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
