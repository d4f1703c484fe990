"""A layer's decompression and diff-ID hash on a thread of their own, ahead of its tar applier.

Inflating and hashing run in C without the interpreter lock; applying entries is Python and holds it.
On one thread they take turns; on two the applier works through one chunk while the next is inflated and
hashed, which for a large layer takes the inflate and hash off the unpack's critical path. A bounded
buffer between them keeps memory small.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import BinaryIO, cast

from snapshotters.compression import decompressed
from store.cancel import Cancellation
from store.layer_stream import LayerStream

__all__ = ["Inflater"]

_READ = 256 << 10
_AHEAD = 2 << 20  # inflated bytes waiting for the applier


class Inflater:
    """Reads ``source`` (compressed), hands the tar to ``tar`` and hashes it: the layer's diff ID."""

    def __init__(self, source: BinaryIO, compression: str, cancel: Cancellation, name: str) -> None:
        self._source = source
        self._compression = compression
        self.tar = LayerStream(cancel, _AHEAD)
        self._hash = hashlib.sha256()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"inflate-{name}", daemon=True)

    def start(self) -> Inflater:
        self._thread.start()
        return self

    def reader(self) -> BinaryIO:
        """The uncompressed tar, for the applier."""
        return cast(BinaryIO, io.BufferedReader(self.tar, _READ))

    def finish(self) -> str:
        """After the applier: hash what it left unread (the tar's padding), wait, and give the diff ID."""
        self.tar.abandon()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return "sha256:" + self._hash.hexdigest()

    def stop(self) -> None:
        """The applier failed: end the thread (its reads of ``source`` fail once the caller abandons it)."""
        self.tar.abandon()
        self._thread.join()

    def _run(self) -> None:
        try:
            inner = decompressed(cast(BinaryIO, io.BufferedReader(cast(io.RawIOBase, self._source), _READ)),
                                 self._compression)
            offset = 0
            while chunk := inner.read(_READ):
                self._hash.update(chunk)
                self.tar.feed(offset, chunk)  # returns at once once the applier is done: the rest is hashed
                offset += len(chunk)
        except BaseException as exc:
            self.error = exc
            self.tar.fail(exc)
            return
        self.tar.close()
