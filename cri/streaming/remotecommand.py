"""The remotecommand protocols (exec and attach) on the server side, over SPDY or WebSocket channels.

SPDY (``X-Stream-Protocol-Version``): the client opens one stream per stdio it asked for, plus ``error`` and,
for a terminal from v3 on, ``resize``; the session starts once all expected streams are answered. From v4 the
final status goes on the error stream as JSON (metav1.Status); before, only a failure's message does.

WebSocket: channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. An empty message on the first output
channel tells the client the server is ready. ``v5.channel.k8s.io`` lets the client close stdin.

Either way the session ends the same: outputs closed, status written, then the connection is closed once
the client has read it (or after a grace period), so no reset destroys data still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cri import logs
from cri.streaming.conn import ByteConn
from cri.streaming.session import Session, StreamOptions, StreamStatus
from cri.streaming.spdy import SpdyConnection, SpdyStream
from cri.streaming.websocket import ChannelConn, WebSocket

__all__ = [
    "ERROR",
    "RESIZE",
    "SPDY_PROTOCOLS",
    "STDERR",
    "STDIN",
    "STDOUT",
    "V5",
    "WEBSOCKET_PROTOCOLS",
    "Transport",
    "open_spdy",
    "open_websocket",
]

log = logs.get_logger()

V1, V2, V3, V4, V5 = "channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io", \
    "v5.channel.k8s.io"
# Newest first. v5 over SPDY is v4 (its stream close is half-closing the SPDY stream).
SPDY_PROTOCOLS = (V5, V4, V3, V2, V1)
WEBSOCKET_PROTOCOLS = (V5, V4, "v4.base64.channel.k8s.io", V1, "base64.channel.k8s.io", "")
_JSON_STATUS = (V5, V4, "v4.base64.channel.k8s.io")
# How long the client gets to read the status and hang up before the server closes the connection.
CLOSE_GRACE_SECONDS = 5.0

# The channels of the WebSocket protocols, by number.
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)


@dataclass
class Transport:
    """A started session's connection: how to finish it."""

    session: Session
    protocol: str
    _error: SpdyStream | None = None
    _channels: ChannelConn | None = None
    _spdy: SpdyConnection | None = None
    _reader: asyncio.Task[None] | None = None
    _outputs: list[SpdyStream] = field(default_factory=list)

    async def finish(self, status: StreamStatus) -> None:
        """Close the outputs, report the status, and end the connection."""
        try:
            for stream in self._outputs:
                await stream.close()
            payload = status.to_json() if self.protocol in _JSON_STATUS else (
                status.message.encode() if status.status != "Success" else b"")
            if self._error is not None:
                if payload:
                    await self._error.write(payload)
                await self._error.close()
            elif self._channels is not None and payload:
                await self._channels.send(ERROR, payload)
        except ConnectionError:
            pass
        finally:
            await self._hang_up()

    async def _hang_up(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), CLOSE_GRACE_SECONDS)
            self._reader.cancel()
        if self._spdy is not None:
            await self._spdy.close()
        if self._channels is not None:
            await self._channels.close()


async def open_spdy(conn: ByteConn, protocol: str, options: StreamOptions, *, idle_timeout: float,
                    creation_timeout: float) -> Transport | None:
    """Accept the client's streams; None when they do not all come in time (the connection is closed)."""
    spdy = SpdyConnection(conn, idle_timeout=idle_timeout)
    streams: dict[str, SpdyStream] = {}
    changed = asyncio.Event()
    kinds = {"error", "stdin", "stdout", "stderr"} | ({"resize"} if protocol in (V5, V4, V3) else set())

    async def on_stream(stream: SpdyStream) -> None:
        kind = stream.header("streamtype")
        if kind not in kinds or kind in streams:
            # Refused, not left open: nobody would read it, and its unread data would stall the connection.
            raise ValueError(f"unexpected stream of type {kind!r}")
        streams[kind] = stream
        changed.set()

    reader = asyncio.create_task(spdy.serve(on_stream))
    expected = 1 + options.stdin + options.stdout + options.stderr + (options.tty and "resize" in kinds)
    try:
        async with asyncio.timeout(creation_timeout):
            while len(streams) < expected:
                if reader.done():
                    return None
                changed.clear()
                waiter = asyncio.create_task(changed.wait())
                await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            for stream in streams.values():
                await stream.replied.wait()
    except TimeoutError:
        log.warning("streaming client did not create its streams in time", expected=expected, got=len(streams))
        reader.cancel()
        await spdy.close()
        return None
    session = Session(options, streams.get("stdin"), streams.get("stdout"), streams.get("stderr"),
                      streams.get("resize"))
    _watch(reader, session)
    outputs = [s for k, s in streams.items() if k in ("stdout", "stderr")]
    if protocol == V1 and (stdin := streams.get("stdin")) is not None:
        await stdin.close()
    return Transport(session, protocol, _error=streams["error"], _spdy=spdy, _reader=reader, _outputs=outputs)


async def open_websocket(conn: ByteConn, protocol: str, options: StreamOptions, *,
                         idle_timeout: float) -> Transport:
    ws = WebSocket(conn, idle_timeout=idle_timeout)
    kinds: Sequence[tuple[bool, bool]] = [
        (options.stdin, False), (False, options.stdout), (False, options.stderr), (False, True), (True, False)]
    channels = ChannelConn(ws, protocol, kinds)
    reader = asyncio.create_task(channels.serve())
    first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    await channels.send(first, b"")
    c = channels.channels
    session = Session(options, c[STDIN] if options.stdin else None, c[STDOUT] if options.stdout else None,
                      c[STDERR] if options.stderr else None, c[RESIZE])
    _watch(reader, session)
    return Transport(session, protocol, _channels=channels, _reader=reader)


def _watch(reader: asyncio.Task[None], session: Session) -> None:
    # The reader ends when the client hangs up: tell the session so its process stops.
    reader.add_done_callback(lambda _: session.gone.set())
