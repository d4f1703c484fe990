"""An in-memory ByteConn for the streaming protocols' tests (no sockets), and the client ends that drive it:
a SPDY peer with its own header compressor and a WebSocket client on wsproto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage

from cri.streaming.spdy_frames import Frame, FrameParser, HeaderCompressor, encode

__all__ = ["MemoryConn", "SpdyPeer", "WsPeer", "within"]

# Every wait in these tests is bounded: a hang fails the test instead of stalling the run.
TIMEOUT = 10.0
T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, timeout)


class MemoryConn:
    """The server's end: ``read`` takes what the client pushed, ``write`` goes to the client's inbox."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.to_client: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def read(self) -> bytes:
        if self.closed.is_set():
            return b""
        return await self.to_server.get()

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionResetError("memory connection is closed")
        self.to_client.put_nowait(data)

    async def close(self) -> None:
        self.closed.set()
        self.to_client.put_nowait(b"")

    def push(self, data: bytes) -> None:
        self.to_server.put_nowait(data)

    def hang_up(self) -> None:
        self.to_server.put_nowait(b"")


class SpdyPeer:
    """The client of a SPDY connection: frames out through its own compressor, server frames parsed back."""

    def __init__(self, conn: MemoryConn) -> None:
        self.conn = conn
        self._compressor = HeaderCompressor()
        self._parser = FrameParser()
        self._frames: list[Frame] = []
        self.eof = False

    def send(self, *frames: Frame) -> None:
        self.conn.push(b"".join(encode(frame, self._compressor) for frame in frames))

    def send_raw(self, data: bytes) -> None:
        self.conn.push(data)

    async def next(self, timeout: float = TIMEOUT) -> Frame | None:
        """The server's next frame; None once the server closed the connection."""
        while not self._frames:
            if self.eof:
                return None
            data = await within(self.conn.to_client.get(), timeout)
            if not data:
                self.eof = True
                continue
            self._frames.extend(self._parser.feed(data))
        return self._frames.pop(0)

    async def until_closed(self, timeout: float = TIMEOUT) -> list[Frame]:
        """Every frame the server sends until it closes the connection (fails if it never does)."""
        frames = []
        while (frame := await self.next(timeout)) is not None:
            frames.append(frame)
        return frames


class WsPeer:
    """A WebSocket client whose handshake is done: masked frames out, the server's events back."""

    def __init__(self, conn: MemoryConn) -> None:
        self.conn = conn
        self.ws = Connection(ConnectionType.CLIENT)
        self.eof = False

    def send(self, message: bytes | str, *, finished: bool = True) -> None:
        event: BytesMessage | TextMessage = BytesMessage(message, message_finished=finished) \
            if isinstance(message, bytes) else TextMessage(message, message_finished=finished)
        self.conn.push(self.ws.send(event))

    async def events(self, timeout: float = TIMEOUT) -> list[Event]:
        """Everything the server sends until it closes the WebSocket or the connection."""
        events: list[Event] = []
        while not self.eof:
            data = await within(self.conn.to_client.get(), timeout)
            if not data:
                self.eof = True
                break
            self.ws.receive_data(data)
            for event in self.ws.events():
                events.append(event)
                if isinstance(event, CloseConnection):
                    with contextlib.suppress(Exception):
                        self.conn.push(self.ws.send(event.response()))
                    return events
        return events

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:
        closes = [e for e in await self.events(timeout) if isinstance(e, CloseConnection)]
        return closes[0].code if closes else None
