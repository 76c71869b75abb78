"""The JSON Lines layout: each table's rows, one JSON object a line, in a file of its own,
written as its reader streams it, into an upload of the store's batch (the manifest is
written last, by the export)."""

from __future__ import annotations

from ..codecs import Compressed
from ..format import TABLE_CHECKSUM, TABLE_CHECKSUMS, TableOutcome
from ..stores.base import Upload


class TableFile:
    """A table's file: compressed and hashed on the way into ``upload``, committed (its bytes
    made durable; it appears with the batch) when finished, dropped if it was not."""

    def __init__(self, upload: Upload, compression: str, result: TableOutcome) -> None:
        self.result = result
        self.digest = TABLE_CHECKSUMS[TABLE_CHECKSUM]()
        self.upload = upload
        self.out = Compressed(upload, compression)

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.out.write(chunk)

    def finish(self) -> None:
        self.result.checksum = self.digest.hexdigest()
        self.out.close()
        self.upload.commit()

    def close(self) -> None:
        if self.upload.state != "committed":
            self.upload.abort()
