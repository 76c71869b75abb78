"""Reading snapshots back: the read layers and the one parser of the layout (:mod:`.reader`),
tables and rows for every later reader (:mod:`.snapshot`: :func:`open_snapshot`),
referential integrity (:mod:`.integrity`) and ``verify`` (:mod:`.verify`)."""

from .snapshot import Snapshot, open_snapshot
from .verify import VerifyResult, verify

__all__ = ["Snapshot", "VerifyResult", "open_snapshot", "verify"]
