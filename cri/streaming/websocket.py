"""WebSocket for the streaming server: the handshake answer, the frames (wsproto), and the two ways Kubernetes
clients use a WebSocket:

- channels (``channel.k8s.io`` and its ``v4.``/``v5.``/``base64.`` variants, as k8s.io/streaming's wsstream
  serves them): each message starts with a channel number — a byte, or an ASCII digit with the payload in
  base64 for the base64 protocols; ``v5`` adds a close signal, the message ``[255, channel]``, that ends the
  client's side of one channel (stdin EOF).
- a tunnel (``SPDY/3.1+portforward.k8s.io``): binary messages carry a SPDY byte stream.

Pings are answered as they come (client-go's heartbeat closes a connection whose pongs stop); an idle
connection is closed after the idle timeout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Sequence

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from cri import logs
from cri.streaming.byte_stream import ByteStream
from cri.streaming.conn import ByteConn

__all__ = ["CLOSE_SIGNAL", "ChannelConn", "MessageRefused", "WebSocket", "accept_headers"]

log = logs.get_logger()

CLOSE_SIGNAL = 255
# A message is at most this big once reassembled; client-go sends at most 32 KiB at a time.
MAX_MESSAGE = 4 * 1024 * 1024
_BASE64_PROTOCOLS = ("base64.channel.k8s.io", "v4.base64.channel.k8s.io")
_CLOSE_SIGNAL_PROTOCOLS = ("v5.channel.k8s.io",)
# A close frame's reason must fit in a control frame (RFC 6455 5.5: 125 bytes with the code).
_MAX_CLOSE_REASON = 100


class MessageRefused(ConnectionResetError):
    """A message the protocol does not allow: the WebSocket is closed with ``code`` (RFC 6455 7.4.1), so
    the client learns why."""

    def __init__(self, reason: str, code: CloseReason) -> None:
        super().__init__(reason)
        self.code = code


def accept_headers(key: str, protocol: str) -> list[tuple[str, str]]:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode())]
    if protocol:
        headers.append(("Sec-WebSocket-Protocol", protocol))
    return headers


class WebSocket:
    """Messages over an upgraded connection; ``messages`` yields whole binary (or text) payloads."""

    def __init__(self, conn: ByteConn, *, idle_timeout: float) -> None:
        self._conn = conn
        self._ws = Connection(ConnectionType.SERVER)
        self._idle_timeout = idle_timeout
        self._write_lock = asyncio.Lock()
        self._partial: list[bytes | str] = []
        self._partial_size = 0
        self._gone = False

    async def receive(self) -> bytes | str | None:
        """The next whole message; None when the client closed, went quiet too long or broke the protocol."""
        while True:
            for event in self._ws.events():
                message = await self._handle(event)
                if message is not None:
                    return message
            if self._gone or self._ws.state is not ConnectionState.OPEN:
                return None
            try:
                data = await asyncio.wait_for(self._conn.read(), self._idle_timeout)
            except TimeoutError:
                log.info("streaming connection idle, closing", idle_timeout_seconds=self._idle_timeout)
                return None
            if not data:
                return None
            try:
                self._ws.receive_data(data)
            except RemoteProtocolError as exc:
                log.warning("streaming client broke the WebSocket protocol", error=str(exc))
                return None

    async def _handle(self, event: object) -> bytes | str | None:
        match event:
            case Ping():
                await self._send_frame(self._ws.send(event.response()))
            case CloseConnection():
                with contextlib.suppress(LocalProtocolError):
                    await self._send_frame(self._ws.send(event.response()))
            case BytesMessage() | TextMessage():
                return self._assemble(event)
        return None

    def _assemble(self, event: BytesMessage | TextMessage) -> bytes | str | None:
        self._partial.append(bytes(event.data) if isinstance(event.data, bytearray) else event.data)
        self._partial_size += len(event.data)
        if self._partial_size > MAX_MESSAGE:
            raise MessageRefused(f"WebSocket message larger than {MAX_MESSAGE} bytes", CloseReason.MESSAGE_TOO_BIG)
        if not event.message_finished:
            return None
        parts, self._partial, self._partial_size = self._partial, [], 0
        if isinstance(event, TextMessage):
            return "".join(str(part) for part in parts)
        return b"".join(part for part in parts if isinstance(part, bytes))

    async def send(self, payload: bytes | str) -> None:
        if self._gone or self._ws.state is not ConnectionState.OPEN:
            raise ConnectionResetError("WebSocket is closed")
        message = BytesMessage(data=payload) if isinstance(payload, bytes) else TextMessage(data=payload)
        await self._send_frame(self._ws.send(message))

    async def _send_frame(self, data: bytes) -> None:
        async with self._write_lock:
            await self._conn.write(data)

    async def close(self, code: CloseReason = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        if self._gone:
            return
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(ConnectionError, LocalProtocolError):
                await self._send_frame(self._ws.send(CloseConnection(code, reason[:_MAX_CLOSE_REASON])))
        self._gone = True
        await self._conn.close()


class Channel:
    """One numbered channel; reads what the client sent on it, writes messages to the client."""

    def __init__(self, conn: ChannelConn, number: int, *, readable: bool, writable: bool) -> None:
        self._conn = conn
        self.number = number
        self.readable = readable
        self.writable = writable
        self.incoming = ByteStream()
        if not readable:
            self.incoming.close()

    async def read(self) -> bytes:
        return await self.incoming.read()

    async def write(self, data: bytes) -> None:
        if self.writable:
            await self._conn.send(self.number, data)

    async def close(self) -> None:
        # A WebSocket channel has no half-close towards the client; it ends with the connection.
        return None


class ChannelConn:
    """Kubernetes channels over a WebSocket."""

    def __init__(self, ws: WebSocket, protocol: str, kinds: Sequence[tuple[bool, bool]]) -> None:
        self._ws = ws
        self.protocol = protocol
        self._base64 = protocol in _BASE64_PROTOCOLS
        self._close_signal = protocol in _CLOSE_SIGNAL_PROTOCOLS
        self.channels = [Channel(self, i, readable=r, writable=w) for i, (r, w) in enumerate(kinds)]

    async def send(self, number: int, data: bytes) -> None:
        if self._base64:
            await self._ws.send(chr(ord("0") + number) + base64.b64encode(data).decode())
        else:
            await self._ws.send(bytes([number]) + data)

    async def serve(self) -> None:
        """Route the client's messages to their channels until the connection ends."""
        try:
            while (message := await self._ws.receive()) is not None:
                await self._route(message)
        except MessageRefused as exc:
            log.info("streaming client sent a message its protocol does not allow", reason=str(exc))
            await self._ws.close(exc.code, str(exc))
        except ConnectionError as exc:
            log.info("streaming WebSocket closed", reason=str(exc))
        finally:
            for channel in self.channels:
                channel.incoming.close()

    async def _route(self, message: bytes | str) -> None:
        if isinstance(message, str) and not self._base64:
            raise MessageRefused(f"text message on {self.protocol or 'channel.k8s.io'}", CloseReason.UNSUPPORTED_DATA)
        raw = message.encode() if isinstance(message, str) else message
        if not raw:
            return
        if self._close_signal and raw[0] == CLOSE_SIGNAL:
            if len(raw) != 2 or raw[1] >= len(self.channels):
                raise MessageRefused(f"bad stream close signal {raw[:8]!r}", CloseReason.PROTOCOL_ERROR)
            self.channels[raw[1]].incoming.close()
            return
        number = raw[0] - ord("0") if self._base64 else raw[0]
        if not 0 <= number < len(self.channels):
            return  # as wsstream: a frame for a channel that does not exist is dropped
        data = raw[1:]
        if self._base64:
            try:
                data = base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                raise MessageRefused(f"channel {number}: payload is not base64",
                                     CloseReason.INVALID_FRAME_PAYLOAD_DATA) from exc
        channel = self.channels[number]
        if channel.readable:
            await channel.incoming.put(data)

    async def close(self) -> None:
        await self._ws.close()


class TunnelConn:
    """A byte stream carried in a WebSocket's binary messages (client-go's TunnelingConnection)."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        try:
            while True:
                message = await self._ws.receive()
                if message is None:
                    return b""
                if isinstance(message, str):
                    raise MessageRefused("text message on a tunnelled connection", CloseReason.UNSUPPORTED_DATA)
                if message:
                    return message
        except MessageRefused as exc:
            await self._ws.close(exc.code, str(exc))
            raise

    async def write(self, data: bytes) -> None:
        await self._ws.send(data)

    async def close(self) -> None:
        await self._ws.close()
