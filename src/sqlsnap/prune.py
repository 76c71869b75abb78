"""``sqlsnap prune``: retention for a folder or bucket prefix of snapshots.

A snapshot is kept when it is one of the ``keep_last`` newest, or younger than
``older_than``, or (for the service's schedules) the newest of one of the last N days, ISO
weeks or months (grandfather-father-son); every other one is deleted together with its
``.sha256`` checksum file.
The newest snapshot is never deleted, so that a backup job that stopped weeks ago cannot
have its last copy pruned away. A snapshot's time is the UTC time in its name when it has
one (the ``{timestamp}`` placeholder: ``2026-11-22T14-30-00Z``), which survives copies
between buckets; otherwise its modification time (S3's LastModified).

Only objects that are sqlsnap snapshots are considered: names ending in ``.json``,
``.json.zst`` or ``.json.gz`` (each optionally ``.age``) that have a ``.sha256`` file beside
them or whose first bytes are sqlsnap metadata, and JSON Lines snapshots: folders (prefixes)
holding a sqlsnap ``metadata.json``. Anything else under the prefix is left alone, and so
are deeper folders, and hidden names (temporary files of writes in progress), except the
temporaries of exports that were killed, which no running process owns any more: those are
removed (and listed).

One code path for every store (a local folder, an S3 prefix, a ``memory://`` store): it
lists, reads and deletes through :class:`sqlsnap.stores.Store` only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .errors import NotFoundError, UsageError
from .format import MANIFEST, SIDECAR_SUFFIX, SNAPSHOT_NAME, looks_like_snapshot
from .stores import Store, open_store

_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})Z")
_AGE = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Bytes read to recognise a snapshot that has no checksum file.
HEAD_BYTES = 1 << 16
#: A manifest larger than this is not read (a sqlsnap manifest is about 1 KB per table).
MANIFEST_BYTES = 64 << 20


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
            year, month, day, hour, minute, second = (int(x) for x in found[-1])
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            pass
    return modified


@dataclass
class Snapshot:
    #: Where it is, as its store shows it: a path, an ``s3://`` or ``memory://`` URL.
    name: str
    modified: datetime
    size: int
    #: Files deleted along with it (its checksum file), named as ``name`` is.
    sidecars: list[str] = field(default_factory=list)
    folder: bool = False
    #: Its key in the store (a folder's ends in ``/``), and its sidecars' keys.
    key: str = field(default="", repr=False)
    sidecar_keys: list[str] = field(default_factory=list, repr=False)

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
    #: Temporaries of killed exports, removed (or, in a dry run, that would be).
    stale: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "dry_run": self.dry_run,
                "kept": [s.to_dict() for s in self.kept], "deleted": [s.to_dict() for s in self.deleted],
                "ignored": self.ignored, "deleted_bytes": sum(s.size for s in self.deleted),
                "stale_temporaries": self.stale}


#: Grandfather-father-son periods: a snapshot's calendar day, ISO week and month (UTC).
PERIODS: dict[str, Any] = {
    "daily": lambda t: t.strftime("%Y-%m-%d"),
    "weekly": lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: t.strftime("%Y-%m")}


def _select(snapshots: list[Snapshot], keep_last: int | None, older_than: timedelta | None,
            now: datetime, periods: dict[str, int] | None = None) -> tuple[list[Snapshot], list[Snapshot]]:
    ordered = sorted(snapshots, key=lambda s: (s.modified, s.name), reverse=True)
    # The newest snapshot of each of the last N days (weeks, months) that have one: walking
    # newest first, the first snapshot seen in a period is that period's newest.
    by_period: set[int] = set()
    for period, count in (periods or {}).items():
        seen: set[str] = set()
        for i, snap in enumerate(ordered):
            key = PERIODS[period](snap.modified)
            if key not in seen and len(seen) < count:
                seen.add(key)
                by_period.add(i)
    kept: list[Snapshot] = []
    deleted: list[Snapshot] = []
    for i, snap in enumerate(ordered):
        protected_by_count = keep_last is not None and i < keep_last
        young = older_than is not None and snap.modified > now - older_than
        (kept if i == 0 or protected_by_count or young or i in by_period else deleted).append(snap)
    return kept, deleted


def _jsonl_snapshot(store: Store, prefix: str) -> Snapshot | None:
    """The JSON Lines snapshot in the folder ``prefix`` (ending in ``/``), if it is one."""
    try:
        inside = list(store.list(prefix))
    except NotFoundError:  # removed meanwhile
        return None
    manifest = next((e for e in inside if e.key == prefix + MANIFEST and not e.prefix), None)
    if manifest is None or manifest.size > MANIFEST_BYTES:
        return None
    try:
        meta = msgspec.json.decode(store.read_small(manifest.key, MANIFEST_BYTES) or b"")
    except msgspec.DecodeError:
        return None
    if not isinstance(meta, dict) or meta.get("format") != "sqlsnap":
        return None
    name = store.url(prefix.rstrip("/"))
    size = sum(e.size for e in inside if not e.prefix)
    when = snapshot_time(prefix, manifest.modified or datetime.now(UTC))
    return Snapshot(name, when, size, folder=True, key=prefix)


def _find(store: Store, start: str) -> tuple[list[Snapshot], list[str]]:
    """The snapshots whose keys start with ``start`` one level down, and the names ignored."""
    entries = list(store.list(start))
    objects = {e.key for e in entries if not e.prefix}
    snapshots: list[Snapshot] = []
    ignored: list[str] = []
    for entry in entries:
        base = entry.key.rstrip("/").rsplit("/", 1)[-1]
        if base.startswith("."):
            continue
        if entry.prefix:
            found = _jsonl_snapshot(store, entry.key)
            if found is not None:
                snapshots.append(found)
            continue
        if not SNAPSHOT_NAME.search(base):
            continue
        sidecar = entry.key + SIDECAR_SUFFIX
        if sidecar not in objects and not looks_like_snapshot(store.read_small(entry.key, HEAD_BYTES) or b""):
            ignored.append(store.url(entry.key))
            continue
        sidecars = [sidecar] if sidecar in objects else []
        modified = snapshot_time(entry.key, entry.modified or datetime.now(UTC))
        snapshots.append(Snapshot(store.url(entry.key), modified, entry.size,
                                  [store.url(k) for k in sidecars], key=entry.key, sidecar_keys=sidecars))
    return snapshots, ignored


def delete_snapshots(store: Store, snapshots: list[Snapshot]) -> None:
    """Delete ``snapshots`` (documents with their checksum files, JSON Lines folders)."""
    # Each step makes what an interruption leaves harmless: first the documents and the
    # manifests (a folder without its manifest is no longer a snapshot anybody reads), then
    # the folders' table files, then the checksum files: at worst a checksum file without its
    # snapshot is left, never a snapshot that verify cannot check.
    store.delete([s.key + MANIFEST if s.folder else s.key for s in snapshots])
    store.delete([s.key for s in snapshots if s.folder])
    store.delete([k for s in snapshots for k in s.sidecar_keys])


def prune(prefix: str, *, keep_last: int | None = None, older_than: str | timedelta | None = None,
          dry_run: bool = False, s3_endpoint: str | None = None,
          now: datetime | None = None, keep_daily: int | None = None, keep_weekly: int | None = None,
          keep_monthly: int | None = None) -> PruneResult:
    """Delete the snapshots under ``prefix`` (a folder, ``folder/name-prefix``, ``s3://bucket/prefix``
    or ``memory://name/prefix``) that no rule keeps: the ``keep_last`` newest, those younger
    than ``older_than``, and the newest of each of the last ``keep_daily`` days, ``keep_weekly``
    ISO weeks and ``keep_monthly`` months that have one (grandfather-father-son, UTC)."""
    periods = {name: n for name, n in (("daily", keep_daily), ("weekly", keep_weekly),
                                       ("monthly", keep_monthly)) if n is not None}
    if keep_last is None and older_than is None and not periods:
        raise UsageError("say what to keep: --keep-last N, --older-than AGE (e.g. 30d), or both")
    if any(n < 1 for n in periods.values()):
        raise UsageError("keep_daily, keep_weekly and keep_monthly must be at least 1")
    if keep_last is not None and keep_last < 1:
        raise UsageError("--keep-last must be at least 1")
    age = parse_age(older_than) if isinstance(older_than, str) else older_than
    now = now or datetime.now(UTC)
    store, start = open_store(prefix, s3_endpoint=s3_endpoint)
    snapshots, ignored = _find(store, start)
    kept, deleted = _select(snapshots, keep_last, age, now, periods)
    if deleted and not dry_run:
        delete_snapshots(store, deleted)
    # Temporaries of exports killed before their commit (SIGKILL, a power cut): hidden,
    # never snapshots; removed once no running process owns them (stores/file.py is_stale).
    stale = [] if dry_run else store.remove_stale(start)
    return PruneResult(prefix, dry_run, kept, deleted, ignored, stale)
