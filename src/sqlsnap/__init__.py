"""sqlsnap: full, consistent, streaming JSON snapshots of relational databases.

The library is the product; the CLI (``sqlsnap.cli``) is a thin layer over it::

    import sqlsnap
    result = sqlsnap.export("sqlite:///app.db", "app.json")
    print(result.path, result.total_rows)
"""

# First: Ctrl-C and SIGTERM while the rest imports (the sqlsnap command only; _startup.py).
from . import _startup  # noqa: F401  # isort: skip

# Underscored: the package's namespace is its public surface.
import importlib as _importlib
import sys as _sys
import types as _types
import typing as _typing

from ._version import __version__
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

if _typing.TYPE_CHECKING:
    from .ai import query
    from .exporter import Export, ExportResult, TableResult, export, plan
    from .inspect import InspectResult, inspect
    from .options import ExportOptions, PolicyOptions, SegmentOptions
    from .plan import Plan
    from .plan.filters import Condition, RowFilter
    from .restore import RestoreResult, restore
    from .snapshot import Snapshot, VerifyResult, open_snapshot, verify

#: The rest of the surface, imported on first use: the ``sqlsnap`` command imports what its
#: command needs, not the whole library (``sqlsnap export`` does not load restore, inspect or
#: the AI hand-off: 15-20 ms of its 0.2 s start).
_LAZY = {
    "query": ".ai",
    **dict.fromkeys(["Export", "ExportResult", "TableResult", "export", "plan"], ".exporter"),
    **dict.fromkeys(["InspectResult", "inspect"], ".inspect"),
    **dict.fromkeys(["ExportOptions", "PolicyOptions", "SegmentOptions"], ".options"),
    "Plan": ".plan",
    **dict.fromkeys(["Condition", "RowFilter"], ".plan.filters"),
    **dict.fromkeys(["RestoreResult", "restore"], ".restore"),
    **dict.fromkeys(["Snapshot", "VerifyResult", "open_snapshot", "verify"], ".snapshot"),
}


if not _typing.TYPE_CHECKING:  # for mypy, the names are those imported above
    def __getattr__(name: str) -> _typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'sqlsnap' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(_types.ModuleType):
    """Three functions share their names with submodules (``plan``, ``inspect``, ``restore``).
    The import system binds a submodule on its package when it first loads it, which would
    hide the function behind the module once anything imported it; the function keeps the
    name (``import sqlsnap.plan`` and ``from sqlsnap.plan import ...`` still find the module)."""

    def __setattr__(self, name: str, value: _typing.Any) -> None:
        if name in ("plan", "inspect", "restore") and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

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
