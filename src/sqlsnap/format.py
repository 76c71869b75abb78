"""The snapshot format, version 1: everything that knows its layout (docs/format.md).

The document writer (:mod:`sqlsnap.writers.document`), the snapshot reader
(:mod:`sqlsnap.snapshot.reader`), verify and prune all take the layout from here: the
framing lines, the magic bytes of the codecs, the metadata object (built and checked), the
per-table checksum algorithms, the ``.sha256`` checksum file and the names of the files.

A document::

    {"metadata": {...},            <- DOC_PREFIX, then the metadata (indented, so on many lines)
    "data": {                      <- DATA_LINE
    "users": [                     <- a table's header; "users": [] or "users": [], when empty
    {"id": 1, ...},                <- one row per line, "," between rows
    {"id": 2, ...}
    ],                             <- "]," between tables, "]" after the last
    },                             <- DATA_END
    "checksums": {"xxh128": {...}} <- CHECKSUMS_PREFIX, one line
    }                              <- END

A JSON Lines snapshot is a folder (or prefix) holding ``MANIFEST`` (the same metadata, each
table with its checksum and ``file``) and one ``<table>.jsonl[.zst|.gz]`` file per table.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import xxhash

from ._version import __version__
from .codecs import SUFFIXES
from .errors import VerifyError

if TYPE_CHECKING:
    from .model import Table
    from .plan import Plan

class TableOutcome(Protocol):
    """What the metadata needs of a table's export (``sqlsnap.exporter.TableResult``)."""

    rows: int
    checksum: str
    file: str | None


FORMAT_NAME = "sqlsnap"
FORMAT_VERSION = 1

# -- framing of the document ---------------------------------------------------------------
DOC_PREFIX = b'{"metadata": '
DATA_LINE = b'"data": {'
DATA_END = b"},"
CHECKSUMS_PREFIX = b'"checksums": '
END = b"}"
#: How a table's header line ends, after its name: rows follow; empty, another table
#: follows; empty and the last.
TABLE_OPEN = b": ["
TABLE_EMPTY_NEXT = b": [],"
TABLE_EMPTY_LAST = b": []"
#: The line after a table's last row: another table follows, or it was the last.
TABLE_CLOSE_NEXT = b"],"
TABLE_CLOSE_LAST = b"]"
#: Between rows, and between the metadata and ``"data"``: a comma ending the line.
SEPARATOR = b","
#: How a row (a JSON object) starts: the last row of a table has no comma to tell it.
ROW_START = b"{"
#: How documents written before the closing checksums member (same version) ended the data.
LEGACY_END = b"}}"
#: The first bytes of every document: what prune looks for in a file without a checksum file.
HEAD = DOC_PREFIX + b'{\n  "format": "sqlsnap"'

# -- codecs, by their magic bytes ----------------------------------------------------------
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

# -- names ---------------------------------------------------------------------------------
#: The manifest of a JSON Lines snapshot.
MANIFEST = "metadata.json"
JSONL_SUFFIX = ".jsonl"
#: The checksum file beside a document: ``<name>.sha256``, in ``sha256sum``'s format.
SIDECAR_SUFFIX = ".sha256"
#: Names that can be snapshot documents.
SNAPSHOT_NAME = re.compile(r"\.json(\.zst|\.gz)?(\.age)?$", re.IGNORECASE)
#: How a message names each per-table checksum algorithm.
CHECKSUM_NAMES = {"xxh128": "XXH3-128", "sha256": "SHA-256"}

#: The per-table checksum: XXH3-128 of the table's rows as JSON lines (docs/format.md), the
#: digest that ``xxh128sum`` prints. Its job is to find the damaged table; the file as a
#: whole has its SHA-256 beside it. It runs at 29 GB/s here against SHA-256's 1.4 GB/s, which
#: took 0.7 s of CPU for every GB exported, on cores the database server shares.
TABLE_CHECKSUM = "xxh128"
#: Per-table checksums ``sqlsnap verify`` reads: files written before XXH3-128 used SHA-256.
TABLE_CHECKSUMS: dict[str, Any] = {"xxh128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def sidecar_text(sha256: str, name: str) -> bytes:
    """A line ``sha256sum -c`` accepts: the digest, two spaces, the file's base name."""
    return f"{sha256}  {os.path.basename(name.rstrip('/'))}\n".encode()


def parse_sidecar(data: bytes, name: str) -> str:
    """The digest in a checksum file's text (``name`` for the message)."""
    digest = data.split(maxsplit=1)[0].decode("ascii", "replace").lower() if data.strip() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise VerifyError(f"{name} is not a checksum file (expected '<sha256>  <name>' as sha256sum "
                          "writes it)", path=name)
    return digest


def default_name(database: str, when: datetime, fmt: str, compression: str | None) -> str:
    """``<database>-export-<UTC time>.json[.zst]``; ``database`` is the name to use, fit for a
    file name already (the exporter escapes it)."""
    stem = database or "database"
    stamp = when.strftime("%Y-%m-%dT%H-%M-%SZ")
    if fmt == "jsonl":
        return f"{stem}-export-{stamp}"
    return f"{stem}-export-{stamp}.json{SUFFIXES.get(compression or 'none', '')}"


def table_filename(name: str, taken: set[str]) -> str:
    """A file name for table ``name`` in a JSON Lines folder, unique in ``taken`` (case
    folded) and harmless as a path: no separator, no leading dot."""
    safe = "".join("_" if ch in "/\\\0" else ch for ch in name).lstrip(".") or "_"
    candidate, n = safe, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{safe}~{n}"
    taken.add(candidate.lower())
    return candidate


def build_metadata(
    source_info: dict[str, Any],
    tables: Sequence[Table],
    results: Mapping[str, TableOutcome],
    excluded: list[str],
    *,
    when: datetime,
    exported_by: str,
    environment: str | None,
    fmt: str,
    plan: Plan | None = None,
    counted: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The metadata object. With ``counted`` (the document, written before its rows) the row
    counts are those and the checksums are left to the document's end; else (JSON Lines,
    whose manifest is written last) both come from ``results``."""
    meta_tables: dict[str, Any] = {}
    rows = counted if counted is not None else {name: r.rows for name, r in results.items()}
    for t in tables:
        r = results[t.name]
        entry: dict[str, Any] = {
            "rows": rows[t.name],
            "columns": [c.to_metadata() for c in t.columns],
            "primary_key": list(t.primary_key),
            "foreign_keys": [fk.to_metadata() for fk in t.foreign_keys],
            "excluded_columns": [],
        }
        if counted is None:
            entry[TABLE_CHECKSUM] = r.checksum
        if plan is not None:  # the columns, keys and exclusions as exported, with their rules
            entry.update(plan.table(t.name).metadata(t))
        if r.file:
            entry["file"] = r.file
        meta_tables[t.name] = entry
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "generator": f"sqlsnap {__version__}",
        "exported_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exported_by": exported_by,
        "export_type": plan.export_type if plan is not None else "full",
        "environment": environment,
        "source": {k: source_info[k] for k in ("dialect", "server_version", "database", "host")},
        "layout": fmt,
        "tables": meta_tables,
        "excluded_tables": excluded,
        "filters": {} if plan is None else {name: f.to_json() for name, f in sorted(plan.filters.items())},
        **({"segment": plan.segment_json()} if plan is not None and plan.export_type == "segment" else {}),
        "total_tables": len(tables),
        "total_rows": sum(rows[t.name] for t in tables),
        "checksums": {"algorithm": TABLE_CHECKSUM, "location": "end" if counted is not None else "tables"},
        # What was left out, masked and included on purpose; never the hash key.
        **({"policy": plan.metadata()} if plan is not None else {}),
    }


def encode_metadata(metadata: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(metadata), indent=2)


def check_metadata(metadata: Any, where: str, *, in_tables: bool = False) -> tuple[dict[str, Any], str]:
    """The metadata's tables and its per-table checksum algorithm; ``in_tables``: each table
    must carry its checksum (JSON Lines)."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise VerifyError(f"{where}: the metadata does not say format \"sqlsnap\"", path=where)
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise VerifyError(f"{where}: format version {version!r} is not one this sqlsnap reads (1); "
                          "upgrade sqlsnap", path=where)
    tables = metadata.get("tables")
    if not isinstance(tables, dict):
        raise VerifyError(f"{where}: the metadata has no tables object", path=where)
    # Files written before the checksums member (same format version) kept SHA-256s.
    checksums = metadata.get("checksums", {"algorithm": "sha256"})
    algorithm = checksums.get("algorithm") if isinstance(checksums, dict) else None
    if algorithm not in TABLE_CHECKSUMS:
        raise VerifyError(f"{where}: the checksum algorithm {algorithm!r} is not one this sqlsnap reads "
                          f"({', '.join(TABLE_CHECKSUMS)}); upgrade sqlsnap", path=where)
    for name, entry in tables.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("rows"), int)
                and (not in_tables or isinstance(entry.get(algorithm), str))):
            raise VerifyError(f"{where}: the metadata of table '{name}' lacks rows"
                              + (f" or {algorithm}" if in_tables else ""), path=where, table=name)
    return tables, algorithm


def looks_like_snapshot(head: bytes) -> bool:
    """Whether ``head``, a file's first bytes, starts a sqlsnap document (plain, zstd or gzip)."""
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        try:
            head = zstandard.ZstdDecompressor().decompressobj().decompress(head)
        except zstandard.ZstdError:
            return False
    elif head.startswith(GZIP_MAGIC):
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(len(HEAD))
        except (OSError, EOFError):
            return False
    return head.startswith(HEAD)
