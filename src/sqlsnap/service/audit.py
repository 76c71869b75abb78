"""The audit trail: an append-only list of what was done, by whom, from where, and how it
ended. Each entry carries the hash of the one before it, so changing, removing or reordering
any entry breaks the chain from there on, and :func:`verify_chain` names the first broken one.

An entry's hash is SHA-256 over its fields as canonical JSON (sorted keys, no spaces) and the
previous entry's hash; the first entry's previous hash is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import ServiceConfig
from .state import State

GENESIS = "0" * 64
FIELDS = ("id", "at", "actor", "action", "target", "address", "outcome", "detail")


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    body = {k: entry[k] for k in FIELDS}
    body["prev_hash"] = prev_hash
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record(state: State, *, actor: str, action: str, target: str = "", address: str = "",
           outcome: str = "ok", detail: dict[str, Any] | None = None) -> int:
    """Append one entry; its id. ``detail`` must hold no secret (it is shown to admins)."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with state.transaction() as db:
        last = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = last["hash"] if last else GENESIS
        entry: dict[str, Any] = {"id": (last["id"] + 1) if last else 1, "at": at, "actor": actor,
                                 "action": action, "target": target, "address": address or "",
                                 "outcome": outcome,
                                 "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))}
        db.execute("INSERT INTO audit (id, at, actor, action, target, address, outcome, detail, prev_hash, "
                   "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [*(entry[k] for k in FIELDS), prev_hash, entry_hash(entry, prev_hash)])
        return int(entry["id"])


def record_start(state: State, config: ServiceConfig) -> None:
    """Note a start of the service, and whether its configuration changed since the last one
    (by the SHA-256 of the file: the file holds no secret)."""
    last = state.one("SELECT detail FROM audit WHERE action = 'service.start' ORDER BY id DESC LIMIT 1")
    previous = json.loads(last["detail"]).get("config_sha256") if last else None
    record(state, actor="service", action="service.start", target=config.path or "",
           detail={"config_sha256": config.digest, "config_changed": previous not in (None, config.digest),
                   "sources": sorted(config.sources), "destinations": sorted(config.destinations)})


def entries(state: State, *, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` entries (older than id ``before``), newest first."""
    rows = state.all("SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?",
                     [before if before is not None else 2**62, limit])
    out = []
    for r in rows:
        item = {k: r[k] for k in FIELDS}
        item["detail"] = json.loads(r["detail"])
        item["hash"] = r["hash"]
        out.append(item)
    return out


@dataclass
class ChainResult:
    entries: int
    #: The id of the first entry that does not follow from the ones before it; None when whole.
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(state: State) -> ChainResult:
    """Walk the whole trail in id order, recomputing every hash."""
    prev_hash, expected_id, n = GENESIS, 1, 0
    for row in state.all("SELECT * FROM audit ORDER BY id"):
        n += 1
        entry = {k: row[k] for k in FIELDS}
        if row["id"] != expected_id:
            return ChainResult(n, row["id"], f"entries {expected_id} to {row['id'] - 1} are missing")
        if row["prev_hash"] != prev_hash:
            return ChainResult(n, row["id"], "its previous-entry hash does not match the entry before it")
        if entry_hash(entry, prev_hash) != row["hash"]:
            return ChainResult(n, row["id"], "its content does not match its hash (the entry was changed)")
        prev_hash, expected_id = row["hash"], row["id"] + 1
    return ChainResult(n)
