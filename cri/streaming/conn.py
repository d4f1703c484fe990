"""Byte connections the streaming protocols run over: a TCP (or TLS) connection after its HTTP upgrade, or a
WebSocket whose binary messages carry a byte stream (SPDY tunnelled through WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

__all__ = ["ByteConn", "TcpConn"]

_READ_SIZE = 64 * 1024


class ByteConn(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" when the peer is done."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class TcpConn:
    """An upgraded HTTP connection; ``initial`` holds bytes already read past the request's head."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes = b"") -> None:
        self._reader = reader
        self._writer = writer
        self._initial = initial

    async def read(self) -> bytes:
        if self._initial:
            data, self._initial = self._initial, b""
            return data
        try:
            return await self._reader.read(_READ_SIZE)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("connection is closed")
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
