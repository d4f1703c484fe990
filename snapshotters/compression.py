"""Decompressing layer blobs while hashing the result (the layer's diff ID)."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO, cast

import zstandard
from isal import igzip

__all__ = ["HashingReader", "decompressed"]


def decompressed(blob: BinaryIO, compression: str) -> BinaryIO:
    """A reader of the uncompressed tar inside ``blob`` (``gzip``, ``zstd`` or ``none``)."""
    if compression == "gzip":
        return cast(BinaryIO, igzip.IGzipFile(fileobj=blob, mode="rb"))  # type: ignore[no-untyped-call]
    if compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)
        return cast(BinaryIO, io.BufferedReader(reader, 1 << 20))
    if compression == "none":
        return blob
    raise ValueError(f"unknown compression {compression!r}")


class HashingReader(io.RawIOBase):
    """Passes reads through, hashing every byte; ``drain`` reads what a consumer left."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        self.count += n
        return n

    def drain(self) -> None:
        while chunk := self._inner.read(1 << 20):
            self._hash.update(chunk)
            self.count += len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()
