"""Stores (:mod:`.base`: the interface), registered by URL scheme: :func:`open_store` turns a
location into a store and the key inside it.

- ``-``: ``stdout`` (write-only), key ``""``;
- ``s3://bucket/a/b``: ``s3``, the bucket, key ``a/b``;
- ``memory://name/a/b``: ``memory``, the process-wide store called ``name``, key ``a/b``;
- ``dir/name``: ``file``, rooted at ``dir``, key ``name``;
- ``dir/``, or ``dir`` when it is an existing folder: ``file``, rooted at ``dir``, key ``""``;
- ``file:///abs/path``: as the plain path ``/abs/path``.

A plain path names a folder when it ends in ``/`` or is an existing folder: the store is
that folder and the key ``""`` (the folder itself: ``batch("")`` makes it, ``list("")``
lists it, ``create("")`` refuses); otherwise the store is the path's folder and the key its
base name. ``s3://bucket/dumps/`` keeps its key ``dumps/``: in a bucket a name is a prefix
of keys, never a folder by itself.

Also here: the placeholders of output names, and opening a snapshot and its checksum file
for reading (verify, decrypt), wherever they live.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import UsageError, os_error
from ..format import SIDECAR_SUFFIX, parse_sidecar, sidecar_text
from .base import Batch, Entry, Reader, Store, Upload
from .file import FileStore, LocalReader
from .s3 import is_s3
from .stdout import StdoutStore

__all__ = [
    "PLACEHOLDERS", "SCHEMES", "SIDECAR_SUFFIX", "Batch", "Entry", "Reader", "Store", "Upload",
    "database_label", "escape_value", "expand_placeholders", "is_s3", "open_input", "open_store",
    "plain_name", "read_sidecar", "sidecar_text",
]


def _file(location: str, s3_endpoint: str | None) -> tuple[Store, str]:
    path = location[len("file://"):] if location[:7].lower() == "file://" else location
    if location[:7].lower() == "file://" and not path.startswith("/"):
        raise UsageError(f"'{location}' names a host; use file:///absolute/path or a plain path")
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return FileStore(path.rstrip("/" + os.sep) or path[:1]), ""
    folder, name = os.path.split(path)
    return FileStore(folder or "."), name


def _s3(location: str, s3_endpoint: str | None) -> tuple[Store, str]:
    from .s3 import S3Store, parse_s3_url

    where = parse_s3_url(location, need_key=False)
    return S3Store(where.bucket, s3_endpoint), where.key


def _memory(location: str, s3_endpoint: str | None) -> tuple[Store, str]:
    from .memory import named

    name, _, key = location[len("memory://"):].partition("/")
    if not name:
        raise UsageError(f"'{location}' has no store name; use memory://NAME/key")
    return named(name), key


def _stdout(location: str, s3_endpoint: str | None) -> tuple[Store, str]:
    return StdoutStore(), ""


#: scheme -> (location, s3_endpoint) -> (store, key). ``-`` is ``stdout``, a plain path ``file``.
SCHEMES: dict[str, Callable[[str, str | None], tuple[Store, str]]] = {
    "file": _file,
    "memory": _memory,
    "s3": _s3,
    "stdout": _stdout,
}


def open_store(location: str, *, s3_endpoint: str | None = None) -> tuple[Store, str]:
    """The store holding ``location``, and the key of ``location`` inside it (the table in the
    module docstring). ``s3_endpoint`` is for ``s3://`` (``--s3-endpoint``)."""
    if location == "-":
        return _stdout(location, s3_endpoint)
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if not scheme:
        return _file(location, s3_endpoint)
    if scheme not in SCHEMES or scheme == "stdout":
        raise UsageError(f"unsupported location '{scheme}://'; use a path, '-' (standard output), "
                         "file:///path, s3://bucket/key or memory://name/key")
    return SCHEMES[scheme](location, s3_endpoint)

#: The placeholders an output name may hold, and what each becomes.
PLACEHOLDERS = {
    "database": "the source database's name (a SQLite file's name without its suffix)",
    "timestamp": "the UTC time of the snapshot, like 2026-11-22T14-30-00Z",
    "environment": "--environment (SQLSNAP_ENVIRONMENT)",
    "export_type": "full for every row of the tables exported, segment when rows are filtered",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: Characters escaped in a placeholder's value: those that would change the meaning of a
#: path or key (separators, control characters, a leading dot), characters that S3 keys and
#: shells treat specially, and ``%`` itself, so that the escaping is reversible.
_UNSAFE = re.compile(r"[%/\\\x00-\x1f\x7f:*?\"<>|]|^\.")


def escape_value(value: str) -> str:
    """``value`` fit to be part of one file name or key segment, injectively: each unsafe
    character becomes ``%XX`` (its UTF-8 bytes in hex), as in a URL, and so does ``%``;
    every other character, dots and spaces included, is kept. Two different values never
    give the same name (``app.prod`` -> ``app.prod``, ``a/b`` -> ``a%2Fb``)."""
    if not value:
        return "%00"  # an empty name: no real value escapes to it (a NUL is not a name)
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), value)


def expand_placeholders(template: str, *, database: str, when: datetime, environment: str | None,
                        export_type: str = "full") -> str:
    """Fill ``{database}``, ``{timestamp}``, ``{environment}`` and ``{export_type}`` in a name,
    each value escaped by :func:`escape_value` (injective: different values, different
    names). ``database`` is the name to use as it is (for SQLite, the file's name without
    its suffix: :func:`database_label`)."""
    if "{" not in template:
        return template

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name == "database":
            return escape_value(database)
        if name == "timestamp":
            return when.strftime("%Y-%m-%dT%H-%M-%SZ")
        if name == "environment":
            if not environment:
                raise UsageError("the output name uses {environment} but no environment is set; "
                                 "give --environment NAME or set SQLSNAP_ENVIRONMENT")
            return escape_value(environment)
        if name == "export_type":
            return escape_value(export_type)
        raise UsageError(f"unknown placeholder {{{name}}} in the output name; use "
                         + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))

    return _PLACEHOLDER.sub(value, template)


def database_label(dialect: str, database: str) -> str:
    """The name ``{database}`` stands for: the database's name; for SQLite, whose database is
    a file, the file's name without its suffix."""
    if dialect == "sqlite":
        return os.path.splitext(os.path.basename(database))[0] or "database"
    return database or "database"


class _StdinReader:
    def __init__(self) -> None:
        import sys

        self._fh = sys.stdin.buffer

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._fh.read(n)
        return data

    def close(self) -> None:
        pass


def open_input(location: str, *, s3_endpoint: str | None = None) -> Any:
    """A reader (``read(n)``, ``close()``) on a snapshot file, ``s3://`` object or ``-`` (stdin)."""
    if location == "-":
        return _StdinReader()
    if is_s3(location):
        from .s3 import S3Store, parse_s3_url

        where = parse_s3_url(location)
        return S3Store(where.bucket, s3_endpoint).open(where.key)
    return LocalReader(location)


def read_sidecar(location: str, *, s3_endpoint: str | None = None) -> tuple[str, str] | None:
    """(digest, name of the checksum file) from ``<location>.sha256``, or None if there is none."""
    name = location + SIDECAR_SUFFIX
    if location == "-":
        return None
    if is_s3(location):
        from .s3 import S3Store, parse_s3_url

        where = parse_s3_url(location)
        data = S3Store(where.bucket, s3_endpoint).read_small(where.key + SIDECAR_SUFFIX, 4096)
    else:
        try:
            with open(name, "rb") as fh:
                data = fh.read(4096)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, name) from None
    if data is None:
        return None
    return parse_sidecar(data, name), name


def plain_name(path: str) -> str:
    """The name without its ``.age`` suffix: what tells the compression of an encrypted file."""
    return path[:-4] if path.lower().endswith(".age") else path
