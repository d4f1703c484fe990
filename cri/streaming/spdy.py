"""The server side of a SPDY/3.1 connection, as client-go and kubelet open it, on asyncio.

The client creates every stream (odd ids, increasing) and waits for each SYN_REPLY before it creates the
next, so a stream is answered as soon as its SYN_STREAM is read. Like moby/spdystream, no flow control is done:
WINDOW_UPDATE and SETTINGS are read and ignored and none are sent (a Go peer never grants more window).
Back-pressure comes from the byte stream itself: a stream's unread data is bounded, and when it is full the
connection stops reading the socket until the consumer catches up.

PINGs from the peer are answered; an idle connection is closed after ``idle_timeout`` seconds without a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from cri import logs
from cri.streaming.byte_stream import ByteStream
from cri.streaming.conn import ByteConn
from cri.streaming.spdy_frames import (
    FLAG_FIN,
    DataFrame,
    Frame,
    FrameParser,
    GoAway,
    HeaderCompressor,
    HeadersFrame,
    Ping,
    ProtocolError,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
    encode,
)

__all__ = ["SpdyConnection", "SpdyStream"]

log = logs.get_logger()

# Sessions here have at most a few streams per request; port-forward opens two per forwarded connection.
MAX_STREAMS = 1024
_CHUNK = 32 * 1024


class SpdyStream:
    """One stream the peer created. ``read`` returns b"" once the peer half-closed or reset it."""

    def __init__(self, connection: SpdyConnection, stream_id: int, headers: dict[str, list[str]]) -> None:
        self.connection = connection
        self.id = stream_id
        self.headers = headers
        self._incoming = ByteStream()
        self._closed_local = False
        self.reset_by_peer = False
        # Set once the SYN_REPLY is out: only then may data be sent on the stream.
        self.replied = asyncio.Event()

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    async def read(self) -> bytes:
        return await self._incoming.read()

    async def write(self, data: bytes) -> None:
        if self._closed_local or self.reset_by_peer:
            raise ConnectionResetError(f"stream {self.id} is closed")
        for at in range(0, len(data), _CHUNK):
            await self.connection.send(DataFrame(self.id, data[at:at + _CHUNK]))

    async def close(self) -> None:
        """Half-close: the peer reads EOF; it may still send."""
        if self._closed_local or self.reset_by_peer:
            return
        self._closed_local = True
        with contextlib.suppress(ConnectionError):
            await self.connection.send(DataFrame(self.id, b"", FLAG_FIN))

    async def reset(self) -> None:
        if self.reset_by_peer:
            return
        self._closed_local = True
        self._incoming.close()
        with contextlib.suppress(ConnectionError):
            await self.connection.send(RstStream(self.id, RstStatus.CANCEL))

    def _peer_reset(self) -> None:
        self.reset_by_peer = True
        self._incoming.close()


class SpdyConnection:
    def __init__(self, conn: ByteConn, *, idle_timeout: float) -> None:
        self._conn = conn
        self._idle_timeout = idle_timeout
        self._parser = FrameParser()
        self._compressor = HeaderCompressor()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._last_stream_id = 0
        self._closed = asyncio.Event()
        self._gone = False
        self._goaway_sent = False

    async def serve(self, on_stream: Callable[[SpdyStream], Awaitable[None]]) -> None:
        """Read frames until the peer goes away, the connection idles out or breaks the protocol.

        ``on_stream`` is awaited for each new stream before its SYN_REPLY is sent; raising from it refuses
        the stream (RST_STREAM), as kubelet's server does for a stream it cannot use.
        """
        try:
            while not self._closed.is_set():
                try:
                    data = await asyncio.wait_for(self._conn.read(), self._idle_timeout)
                except TimeoutError:
                    log.info("streaming connection idle, closing", idle_timeout_seconds=self._idle_timeout)
                    break
                if not data:
                    break
                await self._handle_bytes(data, on_stream)
        except ProtocolError as exc:
            log.warning("streaming client broke the SPDY protocol", error=str(exc))
            await self._go_away(RstStatus.PROTOCOL_ERROR)
        except ConnectionError:
            pass
        finally:
            await self.close()

    async def _handle_bytes(self, data: bytes, on_stream: Callable[[SpdyStream], Awaitable[None]]) -> None:
        for frame in self._parser.feed(data):
            await self._handle(frame, on_stream)

    async def _handle(self, frame: Frame, on_stream: Callable[[SpdyStream], Awaitable[None]]) -> None:
        match frame:
            case DataFrame():
                stream = self._streams.get(frame.stream_id)
                if stream is None:
                    await self.send(RstStream(frame.stream_id, RstStatus.INVALID_STREAM))
                    return
                if frame.data:
                    await stream._incoming.put(frame.data)
                if frame.fin:
                    stream._incoming.close()
            case SynStream():
                await self._open_stream(frame, on_stream)
            case RstStream():
                if (stream := self._streams.pop(frame.stream_id, None)) is not None:
                    stream._peer_reset()
            case Ping():
                # Odd ids are the client's own pings, to be echoed; even ones would answer ours (none sent).
                if frame.id % 2:
                    await self.send(frame)
            case GoAway():
                self._closed.set()
            case HeadersFrame():
                if (stream := self._streams.get(frame.stream_id)) is not None:
                    stream.headers.update({k: list(v) for k, v in frame.headers.items()})
                    if frame.flags & FLAG_FIN:
                        stream._incoming.close()
            case _:
                # SETTINGS, WINDOW_UPDATE, and replies to streams we never open.
                pass

    async def _open_stream(self, frame: SynStream, on_stream: Callable[[SpdyStream], Awaitable[None]]) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_stream_id:
            raise ProtocolError(f"stream id {frame.stream_id} is not a new client stream")
        self._last_stream_id = frame.stream_id
        if len(self._streams) >= MAX_STREAMS:
            await self.send(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, frame.stream_id, {k: list(v) for k, v in frame.headers.items()})
        if frame.fin:
            stream._incoming.close()
        try:
            await on_stream(stream)
        except Exception as exc:  # noqa: BLE001 - a refused stream is reported to the peer, not raised
            log.info("streaming client stream refused", stream_id=frame.stream_id, reason=str(exc))
            await self.send(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        self._streams[frame.stream_id] = stream
        await self.send(SynReply(frame.stream_id))
        stream.replied.set()

    def forget(self, stream: SpdyStream) -> None:
        self._streams.pop(stream.id, None)

    async def send(self, frame: Frame) -> None:
        if self._gone:
            raise ConnectionResetError("streaming connection is closed")
        async with self._write_lock:
            # Encoding under the lock: header compression state must follow the order frames leave in.
            await self._conn.write(encode(frame, self._compressor))

    async def close(self) -> None:
        """Close every stream and the connection; readers of the streams see EOF."""
        if self._gone:
            return
        self._closed.set()
        for stream in list(self._streams.values()):
            stream._incoming.close()
        self._streams.clear()
        await self._go_away(0)
        self._gone = True
        await self._conn.close()

    async def _go_away(self, status: int) -> None:
        # One GOAWAY per connection: a second (OK) one would hide the error status of the first.
        if self._goaway_sent:
            return
        self._goaway_sent = True
        with contextlib.suppress(ConnectionError):
            await self.send(GoAway(self._last_stream_id, status))
