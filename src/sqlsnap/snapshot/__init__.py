"""Reading snapshots back: the read layers (:mod:`.reader`), referential integrity
(:mod:`.integrity`) and ``verify`` (:mod:`.verify`)."""

from .verify import VerifyResult, verify

__all__ = ["VerifyResult", "verify"]
