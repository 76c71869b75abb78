"""``sqlsnap prune``: retention for a folder or bucket prefix of snapshots.

A snapshot is kept when it is one of the ``keep_last`` newest, or younger than
``older_than``; every other one is deleted together with its ``.sha256`` checksum file.
The newest snapshot is never deleted, so that a backup job that stopped weeks ago cannot
have its last copy pruned away. A snapshot's time is the UTC time in its name when it has
one (the ``{timestamp}`` placeholder: ``2026-11-22T14-30-00Z``), which survives copies
between buckets; otherwise its modification time (S3's LastModified).

Only files that are sqlsnap snapshots are considered: names ending in ``.json``,
``.json.zst`` or ``.json.gz`` (each optionally ``.age``) that have a ``.sha256`` file beside
them or whose first bytes are sqlsnap metadata, and JSON Lines folders holding a sqlsnap
``metadata.json`` (local only). Anything else under the prefix is left alone, and so are
deeper folders.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .errors import NotFoundError, UsageError, os_error
from .format import SIDECAR_SUFFIX, SNAPSHOT_NAME, looks_like_snapshot
from .stores import is_s3

_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})Z")
_AGE = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Bytes read to recognise a snapshot that has no checksum file.
HEAD_BYTES = 1 << 16


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` or combinations such as ``1d12h``."""
    compact = text.strip().replace(" ", "")
    if not compact or _AGE.sub("", compact):
        raise UsageError(f"'{text}' is not an age; use a number and a unit: 30d, 12h, 2w, 90m, 45s")
    return timedelta(seconds=sum(int(n) * _UNITS[u.lower()] for n, u in _AGE.findall(compact)))


def snapshot_time(name: str, modified: datetime) -> datetime:
    """The ``{timestamp}`` in ``name`` (the last one), else ``modified``."""
    found = _STAMP.findall(os.path.basename(name.rstrip("/")))
    if found:
        try:
            return datetime(*(int(x) for x in found[-1]), tzinfo=UTC)  # type: ignore[misc]
        except ValueError:
            pass
    return modified


@dataclass
class Snapshot:
    #: Path or ``s3://`` URL.
    name: str
    modified: datetime
    size: int
    #: Files deleted along with it (its checksum file).
    sidecars: list[str] = field(default_factory=list)
    folder: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modified": self.modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "bytes": self.size, "sidecars": self.sidecars}


@dataclass
class PruneResult:
    prefix: str
    dry_run: bool
    kept: list[Snapshot]
    deleted: list[Snapshot]
    #: Names that look like snapshots but could not be recognised as sqlsnap's (left alone).
    ignored: list[str]

    def summary(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "dry_run": self.dry_run,
                "kept": [s.to_dict() for s in self.kept], "deleted": [s.to_dict() for s in self.deleted],
                "ignored": self.ignored, "deleted_bytes": sum(s.size for s in self.deleted)}


def _select(snapshots: list[Snapshot], keep_last: int | None, older_than: timedelta | None,
            now: datetime) -> tuple[list[Snapshot], list[Snapshot]]:
    ordered = sorted(snapshots, key=lambda s: (s.modified, s.name), reverse=True)
    kept: list[Snapshot] = []
    deleted: list[Snapshot] = []
    for i, snap in enumerate(ordered):
        protected_by_count = keep_last is not None and i < keep_last
        young = older_than is not None and snap.modified > now - older_than
        (kept if i == 0 or protected_by_count or young else deleted).append(snap)
    return kept, deleted


def _local(prefix: str) -> tuple[list[Snapshot], list[str], Callable[[Snapshot], None]]:
    if prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        folder, start = prefix, ""
    else:
        folder, start = os.path.dirname(prefix) or ".", os.path.basename(prefix)
    if not os.path.isdir(folder):
        raise NotFoundError(f"folder {folder} does not exist", path=folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise os_error(exc, folder) from None
    names = {e.name for e in entries}
    snapshots: list[Snapshot] = []
    ignored: list[str] = []
    for entry in entries:
        if not entry.name.startswith(start) or entry.name.startswith("."):
            continue
        path = os.path.join(folder, entry.name)
        if entry.is_dir(follow_symlinks=False):
            manifest = os.path.join(path, "metadata.json")
            try:
                with open(manifest, "rb") as fh:
                    meta = msgspec.json.decode(fh.read())
                stat = os.stat(manifest)
            except (OSError, msgspec.DecodeError):
                continue
            if isinstance(meta, dict) and meta.get("format") == "sqlsnap":
                size = sum(f.stat().st_size for f in os.scandir(path) if f.is_file())
                when = snapshot_time(path, datetime.fromtimestamp(stat.st_mtime, UTC))
                snapshots.append(Snapshot(path, when, size, folder=True))
            continue
        if not entry.is_file(follow_symlinks=False) or not SNAPSHOT_NAME.search(entry.name):
            continue
        sidecar = entry.name + SIDECAR_SUFFIX
        if sidecar not in names:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(HEAD_BYTES)
            except OSError:
                head = b""
            if not looks_like_snapshot(head):
                ignored.append(path)
                continue
        stat = entry.stat()
        modified = snapshot_time(path, datetime.fromtimestamp(stat.st_mtime, UTC))
        snapshots.append(Snapshot(path, modified, stat.st_size,
                                  [os.path.join(folder, sidecar)] if sidecar in names else []))

    def delete(snap: Snapshot) -> None:
        try:
            if snap.folder:
                shutil.rmtree(snap.name)
            else:
                os.unlink(snap.name)
            for extra in snap.sidecars:
                try:
                    os.unlink(extra)
                except FileNotFoundError:
                    pass
        except OSError as exc:
            raise os_error(exc, snap.name) from None

    return snapshots, ignored, delete


def _s3(prefix: str, s3_endpoint: str | None) -> tuple[list[Snapshot], list[str],
                                                       Callable[[list[Snapshot]], None]]:
    from .stores.s3 import S3Store, parse_s3_url

    where = parse_s3_url(prefix, need_key=False)
    store = S3Store(where.bucket, s3_endpoint)
    objects = list(store.list(where.key))
    keys = {o.key for o in objects}
    snapshots: list[Snapshot] = []
    ignored: list[str] = []
    for obj in objects:
        base = obj.key.rsplit("/", 1)[-1]
        if base.startswith(".") or not SNAPSHOT_NAME.search(base):
            continue
        sidecar = obj.key + SIDECAR_SUFFIX
        if sidecar not in keys and not looks_like_snapshot(store.read_head(obj.key, HEAD_BYTES)):
            ignored.append(store.url(obj.key))
            continue
        snapshots.append(Snapshot(store.url(obj.key), snapshot_time(obj.key, obj.modified), obj.size,
                                  [store.url(sidecar)] if sidecar in keys else []))

    def key_of(url: str) -> str:
        return parse_s3_url(url).key

    def delete_many(snaps: list[Snapshot]) -> None:
        # Snapshots first, then their checksum files: an interrupted prune leaves at worst a
        # checksum file without its snapshot, never a snapshot that verify cannot check.
        store.delete([key_of(s.name) for s in snaps])
        store.delete([key_of(x) for s in snaps for x in s.sidecars])

    return snapshots, ignored, delete_many


def prune(prefix: str, *, keep_last: int | None = None, older_than: str | timedelta | None = None,
          dry_run: bool = False, s3_endpoint: str | None = None,
          now: datetime | None = None) -> PruneResult:
    """Delete the snapshots under ``prefix`` (a folder, ``folder/name-prefix`` or ``s3://bucket/prefix``)
    that are neither among the ``keep_last`` newest nor younger than ``older_than``."""
    if keep_last is None and older_than is None:
        raise UsageError("say what to keep: --keep-last N, --older-than AGE (e.g. 30d), or both")
    if keep_last is not None and keep_last < 1:
        raise UsageError("--keep-last must be at least 1")
    age = parse_age(older_than) if isinstance(older_than, str) else older_than
    now = now or datetime.now(UTC)
    if is_s3(prefix):
        snapshots, ignored, delete_many = _s3(prefix, s3_endpoint)
        kept, deleted = _select(snapshots, keep_last, age, now)
        if deleted and not dry_run:
            delete_many(deleted)
    else:
        snapshots, ignored, delete = _local(prefix)
        kept, deleted = _select(snapshots, keep_last, age, now)
        if not dry_run:
            for snap in deleted:
                delete(snap)
    return PruneResult(prefix, dry_run, kept, deleted, ignored)
