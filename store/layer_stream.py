"""A layer's compressed bytes handed from its download to its unpacker as they arrive.

The download thread writes each chunk into the content store's ingest and ``feed``s it here; the unpacker
reads it on its own thread. A bounded buffer holds the download back while the unpacker is behind, so
memory stays small whatever the layer's size. The end of the stream is only given once the blob is
verified and committed (``close``), so an unpacker that reaches it knows the compressed digest matched;
a failed download ends the stream with its error (``fail``).
"""

from __future__ import annotations

import collections
import io
import threading
from typing import Any, Protocol

from errdefs import Cancelled
from store.cancel import Cancellation
from store.digest import Digest

__all__ = ["ContentLabels", "LayerSink", "LayerStream"]

# Labels to add to blobs, by digest.
ContentLabels = dict[Digest, dict[str, str]]

_BUFFER = 1 << 20


class LayerSink(Protocol):
    """What a pull feeds each layer to while it downloads: the unpacker of one image."""

    def needs(self, index: int) -> bool:
        """Whether layer ``index`` must be fetched (it is not unpacked yet)."""

    def consume(self, index: int, stream: LayerStream) -> None:
        """Unpack layer ``index`` from ``stream``; runs on its own thread while the layer downloads."""

    def labels(self) -> ContentLabels:
        """Labels for the image's blobs, once every layer is consumed."""

    def close(self) -> None:
        """No more layers come, whether the pull succeeded or not."""


class LayerStream(io.RawIOBase):
    def __init__(self, cancel: Cancellation, buffer: int = _BUFFER) -> None:
        self._cancel = cancel
        self._limit = buffer
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._fed = 0  # bytes of the blob passed on so far
        self._ended = False
        self._error: BaseException | None = None
        self._abandoned = False
        self._changed = threading.Condition()
        cancel.on_cancel(self._wake)

    # The download's side.

    def feed(self, offset: int, data: bytes) -> None:
        """Pass on the bytes at ``offset`` of the blob; bytes passed on before (a restarted transfer) are skipped."""
        skip = self._fed - offset
        if skip >= len(data):
            return
        view = memoryview(data)[max(0, skip):]
        with self._changed:
            while self._buffered >= self._limit and not self._abandoned and not self._cancel.cancelled:
                self._changed.wait()
            self._fed += len(view)
            if self._abandoned or self._cancel.cancelled:
                return
            self._chunks.append(view)
            self._buffered += len(view)
            self._changed.notify_all()

    def close(self) -> None:
        """The blob is complete and verified."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._changed:
            self._error = error
            self._ended = True
            self._changed.notify_all()

    # The unpacker's side.

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._changed:
            while not self._chunks and not self._ended and not self._abandoned:
                self._cancel.check()
                self._changed.wait()
            self._cancel.check()
            if self._abandoned:
                # Another thread gave up on this stream (its consumer failed) while this one read it.
                raise Cancelled("the layer's unpack stopped")
            if not self._chunks:
                self._raise_error()
                return 0
            chunk = self._chunks[0]
            n = min(len(buffer), len(chunk))
            buffer[:n] = chunk[:n]
            if n == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[n:]
            self._buffered -= n
            self._changed.notify_all()
            return n

    def finish(self) -> None:
        """Read no more, and wait until the blob is verified; raises the download's error if it failed."""
        with self._changed:
            self._abandon()
            while not self._ended:
                self._cancel.check()
                self._changed.wait()
            self._raise_error()

    def abandon(self) -> None:
        """Nothing more will be read: the download goes on into the content store alone."""
        with self._changed:
            self._abandon()

    def _abandon(self) -> None:
        self._abandoned = True
        self._chunks.clear()
        self._buffered = 0
        self._changed.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
