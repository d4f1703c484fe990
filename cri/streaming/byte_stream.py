"""A bounded, closable queue of bytes between a connection's reader and one consumer, on asyncio."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ByteStream"]

# Unread bytes a stream may hold before its producer waits: enough for throughput, bounded for memory.
DEFAULT_LIMIT = 1024 * 1024


class ByteStream:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, data: bytes) -> None:
        """Queue data, waiting while the stream is full; data put after close is dropped."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or self._size < self._limit)
            if self._closed:
                return
            self._chunks.append(data)
            self._size += len(data)
            self._changed.notify_all()

    async def read(self) -> bytes:
        """The next chunk; b"" once closed and drained."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._chunks or self._closed)
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            self._changed.notify_all()
            return chunk

    def close(self) -> None:
        """End of data: readers drain what is queued, then see b""; blocked producers are released."""
        self._closed = True
        # notify_all needs the lock; hand it to the loop so close() can be called from sync code.
        asyncio.ensure_future(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

