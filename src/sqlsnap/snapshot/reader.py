"""Reading a snapshot back, in bounded memory, through the layers that wrote it in reverse:
storage -> SHA-256 of the bytes as stored -> age decryption -> decompression (told by the
magic bytes) -> lines. ``verify``, and every later reader of snapshots, stream through
these."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import SnapError, UsageError, VerifyError
from ..format import GZIP_MAGIC, ZSTD_MAGIC

#: Read size through the layers; also the unit of memory besides the longest row.
READ_BYTES = 1 << 20


class HashingReader:
    """Hashes and counts the bytes as stored, on their way in."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(READ_BYTES):
            pass


class Prefixed:
    """``head`` (already read to sniff the format) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        out: bytes = self.stream.read(n)
        return out


def read_head(stream: Any, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class Decompressed:
    """Decompression errors as VerifyError, located by the bytes read so far."""

    def __init__(self, stream: Any, compression: str, raw: HashingReader, name: str) -> None:
        self.compression = compression
        self.raw = raw
        self.name = name
        if compression == "zstd":
            import zstandard

            self._inner: Any = zstandard.ZstdDecompressor().stream_reader(
                stream, read_size=READ_BYTES, read_across_frames=True)
            self._errors: tuple[type[BaseException], ...] = (zstandard.ZstdError,)
        else:
            self._inner = gzip.GzipFile(fileobj=stream, mode="rb")
            self._errors = (OSError, EOFError, zlib.error)

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._inner.read(n)
            return data
        except SnapError:
            raise
        except self._errors as exc:
            raise VerifyError(f"{self.name}: {self.compression} data is damaged near byte {self.raw.bytes:,} "
                              f"of the file ({exc})", path=self.name) from None


class Lines:
    """Lines of a stream, without their ``\\n``; ``cut`` is True on a last line that has none."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.cut = False

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        while block := self.stream.read(READ_BYTES):
            if b"\n" not in block:
                pending.append(block)  # a long row: joined once its end arrives
                continue
            if pending:
                pending.append(block)
                block = b"".join(pending)
                pending = []
            lines = block.split(b"\n")
            tail = lines.pop()
            yield from lines
            if tail:
                pending = [tail]
        if pending:
            self.cut = True
            yield b"".join(pending)


def plain_stream(source: Any, counter: HashingReader, where: str, identities: Sequence[Any] | None,
                  result: Any) -> tuple[Any, Any]:
    """(the decrypted, decompressed stream, the decrypting reader or None). ``counter`` counts
    the bytes read from storage, to locate damaged compressed data."""
    from ..crypto import Decrypting, is_encrypted

    head = read_head(source, 64)
    stream: Any = Prefixed(head, source)
    decrypting = None
    if is_encrypted(head):
        if identities is None:
            raise UsageError(f"{where} is encrypted; give --identity FILE", path=where)
        result.encrypted = True
        decrypting = Decrypting(stream, identities, where)
        try:
            head = read_head(decrypting, 4)
        except BaseException:
            decrypting.close()
            raise
        stream = Prefixed(head, decrypting)
    compression = "none"
    if head.startswith(ZSTD_MAGIC):
        compression = "zstd"
    elif head.startswith(GZIP_MAGIC):
        compression = "gzip"
    result.compression = compression
    if compression != "none":
        stream = Decompressed(stream, compression, counter, where)
    return stream, decrypting
