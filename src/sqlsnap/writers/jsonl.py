"""The JSON Lines layout: each table's rows, one JSON object a line, in a file of its own,
written as its reader streams it (the manifest is written last, by the export)."""

from __future__ import annotations

import os

from ..codecs import Compressed
from ..format import TABLE_CHECKSUM, TABLE_CHECKSUMS, TableOutcome
from ..stores.file import WritebackFile


class TableFile:
    """A table's file in the JSON Lines layout: compressed, hashed, fsynced when finished,
    closed whatever happens."""

    def __init__(self, path: str, compression: str, result: TableOutcome) -> None:
        self.result = result
        self.digest = TABLE_CHECKSUMS[TABLE_CHECKSUM]()
        self.fh = WritebackFile(path)
        self.out = Compressed(self.fh, compression)

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.out.write(chunk)

    def finish(self) -> None:
        self.result.checksum = self.digest.hexdigest()
        self.out.close()
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()
