"""What an export reports while it runs (:class:`Progress`) and when it is done
(:class:`ExportResult`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..model import Table


class Progress(Protocol):
    """Receives progress from the worker threads; implementations must be thread-safe."""

    def start(self, tables: Sequence[Table]) -> None: ...
    def advance(self, table: str, rows: int, nbytes: int) -> None: ...
    def table_done(self, table: str, rows: int, nbytes: int) -> None: ...
    def finish(self) -> None: ...


@dataclass
class TableResult:
    name: str
    rows: int = 0
    #: Bytes of the table's JSON lines (uncompressed).
    bytes: int = 0
    #: The table's checksum (``TABLE_CHECKSUM``: XXH3-128) of its rows as JSON lines, each
    #: ended by a newline.
    checksum: str = ""
    file: str | None = None


@dataclass
class ExportResult:
    """What an export produced. ``summary()`` is what ``--json`` prints."""

    path: str
    format: str
    compression: str
    tables: dict[str, TableResult]
    bytes: int
    sha256: str | None
    seconds: float
    metadata: dict[str, Any] = field(repr=False)
    #: Where the ``sha256sum``-style checksum file was stored (None for stdout and folders).
    checksum_file: str | None = None
    encrypted: bool = False
    #: The plan the export followed (:class:`sqlsnap.plan.Plan`): what ``sqlsnap plan`` prints.
    plan: Any = field(default=None, repr=False)
    #: What the user should know that changed nothing in the snapshot: stale temporaries of
    #: killed exports removed, fewer readers than asked.
    notices: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "compression": self.compression,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "checksum_file": self.checksum_file,
            "encrypted": self.encrypted,
            "tables": len(self.tables),
            "rows": self.total_rows,
            "rows_per_table": {name: t.rows for name, t in self.tables.items()},
            "seconds": round(self.seconds, 3),
            "source": self.metadata["source"],
            "notices": self.notices,
        }
