"""The port-forward protocols on the server side.

SPDY (``portforward.k8s.io``): for each forwarded connection the client opens an ``error`` and a ``data``
stream with the same ``requestID`` (older clients: the data stream's id is the error stream's plus 2) and a
``port`` header; once both are there the data is copied to and from that port in the pod. A failure is
written as text on the error stream, and both streams are reset.

WebSocket (``v4.channel.k8s.io`` and its base64 variant): the ports come from the request the URL was made
for; channel 2i is port i's data, 2i+1 its errors, and each starts with the port as two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cri import logs
from cri.streaming.conn import ByteConn
from cri.streaming.session import Input, Output
from cri.streaming.spdy import SpdyConnection, SpdyStream
from cri.streaming.websocket import Channel, ChannelConn, WebSocket

__all__ = ["SPDY_PROTOCOLS", "TUNNEL_PROTOCOL", "WEBSOCKET_PROTOCOLS", "Forward", "serve_spdy", "serve_websocket"]

log = logs.get_logger()

SPDY_PROTOCOLS = ("portforward.k8s.io",)
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
WEBSOCKET_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "")

# Copy between the client's stream and a port; raises with the message for the client when it cannot.
Forward = Callable[[int, Input, Output], Awaitable[None]]


@dataclass
class _Pair:
    request_id: str
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    task: asyncio.Task[None] | None = None


async def serve_spdy(conn: ByteConn, forward: Forward, describe: Callable[[int], str], *, idle_timeout: float,
                     creation_timeout: float) -> None:
    """Serve stream pairs until the client hangs up; ``describe(port)`` prefixes error messages."""
    spdy = SpdyConnection(conn, idle_timeout=idle_timeout)
    pairs: dict[str, _Pair] = {}
    work: set[asyncio.Task[None]] = set()

    def spawn(coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        work.add(task)
        task.add_done_callback(work.discard)

    async def on_stream(stream: SpdyStream) -> None:
        port = _port(stream.header("port"))
        kind = stream.header("streamtype")
        if kind not in ("error", "data"):
            raise ValueError(f"invalid stream type {kind!r}")
        request_id = stream.header("requestid") or str(stream.id if kind == "error" else stream.id - 2)
        pair = pairs.get(request_id)
        if pair is None:
            pair = pairs[request_id] = _Pair(request_id)
            spawn(_expire(pair, pairs, creation_timeout, spdy))
        if getattr(pair, kind) is not None:
            spawn(_complain(pair, f"{kind} stream already assigned"))
            # Refused: left open and unread, its data would stall the connection.
            raise ValueError(f"{kind} stream of request {request_id} already assigned")
        setattr(pair, kind, stream)
        if pair.data is not None and pair.error is not None:
            spawn(_forward(pair, port, forward, describe, spdy))

    try:
        await spdy.serve(on_stream)
    finally:
        for task in list(work):
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        await spdy.close()


def _port(text: str) -> int:
    if not text:
        raise ValueError('"port" header is required')
    try:
        port = int(text, 10)
    except ValueError:
        raise ValueError(f"unable to parse {text!r} as a port") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {text!r} must be between 1 and 65535")
    return port


async def _forward(pair: _Pair, port: int, forward: Forward, describe: Callable[[int], str],
                   spdy: SpdyConnection) -> None:
    data, error = pair.data, pair.error
    assert data is not None and error is not None
    await data.replied.wait()
    await error.replied.wait()
    try:
        await forward(port, data, data)
    except Exception as exc:  # noqa: BLE001 - every failure is the client's to read on the error stream
        log.info("port forward failed", port=port, error=str(exc))
        with contextlib.suppress(ConnectionError):
            await error.write(f"{describe(port)}: {exc}".encode())
        await data.reset()
        await error.reset()
    else:
        await data.close()
        await error.close()
    finally:
        spdy.forget(data)
        spdy.forget(error)


async def _expire(pair: _Pair, pairs: dict[str, _Pair], timeout: float, spdy: SpdyConnection) -> None:
    try:
        await asyncio.sleep(timeout)
        if pair.data is None or pair.error is None:
            await _complain(pair, f"timed out waiting for streams of request {pair.request_id}")
            # The half pair gives its stream back, or enough of them would use up the connection's streams.
            for stream in (pair.data, pair.error):
                if stream is not None:
                    await stream.reset()
                    spdy.forget(stream)
    finally:
        pairs.pop(pair.request_id, None)


async def _complain(pair: _Pair, message: str) -> None:
    if pair.error is not None:
        await pair.error.replied.wait()
        with contextlib.suppress(ConnectionError):
            await pair.error.write(message.encode())


async def serve_websocket(conn: ByteConn, protocol: str, ports: list[int], forward: Forward,
                          describe: Callable[[int], str], *, idle_timeout: float) -> None:
    ws = WebSocket(conn, idle_timeout=idle_timeout)
    channels = ChannelConn(ws, protocol, [(True, True), (False, True)] * len(ports))
    reader = asyncio.create_task(channels.serve())
    try:
        for i, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await channels.send(2 * i, prefix)
            await channels.send(2 * i + 1, prefix)
        forwards = [asyncio.create_task(_forward_channel(port, channels.channels[2 * i],
                                                         channels.channels[2 * i + 1], forward, describe))
                    for i, port in enumerate(ports)]
        everything = asyncio.create_task(_all(forwards))
        await asyncio.wait([reader, everything], return_when=asyncio.FIRST_COMPLETED)
        everything.cancel()
        for task in forwards:
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)
    finally:
        reader.cancel()
        await channels.close()


async def _forward_channel(port: int, data: Channel, error: Channel, forward: Forward,
                           describe: Callable[[int], str]) -> None:
    try:
        await forward(port, data, data)
    except Exception as exc:  # noqa: BLE001 - reported to the client on the port's error channel
        log.info("port forward failed", port=port, error=str(exc))
        with contextlib.suppress(ConnectionError):
            await error.write(f"{describe(port)}: {exc}".encode())


async def _all(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
