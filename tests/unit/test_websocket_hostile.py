"""A hostile or broken WebSocket client against the channel protocols (channel.k8s.io and its variants), the
SPDY tunnel, and the resize stream, over an in-memory connection: each case ends in a WebSocket close with a
code that says why, or the bad part is dropped and the session goes on."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Coroutine
from typing import Any

import pytest
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from cri.streaming import portforward, websocket
from cri.streaming.session import Input, Output, decode_resizes
from cri.streaming.spdy_frames import GoAway
from cri.streaming.websocket import ChannelConn, TunnelConn, WebSocket
from tests.support.memory_conn import MemoryConn, SpdyPeer, WsPeer, within

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

# stdin readable; stdout, stderr, error writable; resize readable (as remotecommand opens them).
EXEC_CHANNELS = [(True, False), (False, True), (False, True), (False, True), (True, False)]


def run(test: Coroutine[Any, Any, None]) -> None:
    asyncio.run(within(test, 30))


async def channels(protocol: str, idle_timeout: float = 30.0) -> tuple[WsPeer, ChannelConn, asyncio.Task[None]]:
    conn = MemoryConn()
    chans = ChannelConn(WebSocket(conn, idle_timeout=idle_timeout), protocol, EXEC_CHANNELS)
    return WsPeer(conn), chans, asyncio.create_task(chans.serve())


async def stdin_gets(chans: ChannelConn, expected: bytes) -> None:
    assert await within(chans.channels[0].read()) == expected


@pytest.mark.parametrize(("protocol", "message", "code"), [
    ("v5.channel.k8s.io", "\0text on a binary protocol", CloseReason.UNSUPPORTED_DATA),
    ("v4.channel.k8s.io", "\0text on a binary protocol", CloseReason.UNSUPPORTED_DATA),
    ("v4.base64.channel.k8s.io", "0not*base64!", CloseReason.INVALID_FRAME_PAYLOAD_DATA),
    ("base64.channel.k8s.io", "0aGVsbG8", CloseReason.INVALID_FRAME_PAYLOAD_DATA),  # missing padding
    ("v5.channel.k8s.io", b"\xff\x09", CloseReason.PROTOCOL_ERROR),             # close a channel that is not there
    ("v5.channel.k8s.io", b"\xff\x00\x01", CloseReason.PROTOCOL_ERROR),         # a close signal too long
], ids=["text-v5", "text-v4", "base64", "base64-padding", "close-channel", "close-long"])
def test_a_bad_message_closes_the_websocket_with_a_reason(protocol: str, message: bytes | str, code: int) -> None:
    async def test() -> None:
        peer, chans, task = await channels(protocol)
        peer.send(message)
        assert await peer.close_code() == code
        await within(task)
        assert await within(chans.channels[0].read()) == b""
    run(test())


def test_an_oversized_message_closes_the_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket, "MAX_MESSAGE", 64 * 1024)

    async def test() -> None:
        peer, _, task = await channels("v5.channel.k8s.io")
        for _ in range(3):  # one message in fragments, larger than the limit only once reassembled
            peer.send(b"\0" + b"x" * 30_000, finished=False)
        assert await peer.close_code() == CloseReason.MESSAGE_TOO_BIG
        await within(task)
    run(test())


def test_a_frame_that_breaks_the_websocket_framing_is_answered_with_a_protocol_error_close() -> None:
    async def test() -> None:
        peer, _, task = await channels("v5.channel.k8s.io")
        peer.conn.push(b"\x82\x05hello")  # unmasked: a client must mask every frame
        assert await peer.close_code() == CloseReason.PROTOCOL_ERROR
        await within(task)
    run(test())


def test_a_close_and_a_ping_in_one_read_end_the_session_quietly() -> None:
    async def test() -> None:
        peer, _, task = await channels("v5.channel.k8s.io")
        peer.conn.push(peer.ws.send(CloseConnection(code=1000)) + b"\x89\x80\0\0\0\0")  # close, then a masked ping
        assert await peer.close_code() == CloseReason.NORMAL_CLOSURE
        await within(task)  # and it raised nothing
    run(test())


def test_messages_for_unknown_channels_are_dropped_and_the_session_goes_on() -> None:
    async def test() -> None:
        peer, chans, task = await channels("v5.channel.k8s.io")
        peer.send(b"\x07ignored")
        peer.send(b"\x01not readable")  # stdout: the client cannot write to it
        peer.send(b"")
        peer.send(b"\x00kept")
        await stdin_gets(chans, b"kept")
        peer.send(b"\xff\x00")  # v5: the client closes stdin
        await stdin_gets(chans, b"")
        await chans.channels[1].write(b"out")
        events = await within(_next_message(peer))
        assert events == b"\x01out"
        peer.conn.hang_up()
        await within(task)
    run(test())


async def _next_message(peer: WsPeer) -> bytes | str:
    while True:
        data = await peer.conn.to_client.get()
        peer.ws.receive_data(data)
        for event in peer.ws.events():
            if isinstance(event, BytesMessage | TextMessage):
                return event.data  # type: ignore[return-value]


def test_an_idle_websocket_is_closed() -> None:
    async def test() -> None:
        peer, chans, task = await channels("v5.channel.k8s.io", idle_timeout=0.2)
        await within(task)
        await chans.close()
        assert await peer.close_code() == CloseReason.NORMAL_CLOSURE
    run(test())


# --- SPDY in a WebSocket (port-forward's tunnel) -------------------------------------------------------------

def test_a_text_message_in_the_spdy_tunnel_closes_it() -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = WsPeer(conn)

        async def forward(port: int, stream: Input, reply: Output) -> None:
            raise AssertionError("no stream should be forwarded")

        task = asyncio.create_task(portforward.serve_spdy(
            TunnelConn(WebSocket(conn, idle_timeout=30)), forward, str, idle_timeout=30, creation_timeout=5))
        peer.send("SPDY frames come in binary messages")
        assert await peer.close_code() == CloseReason.UNSUPPORTED_DATA
        await within(task)
    run(test())


def test_a_hostile_spdy_frame_in_the_tunnel_gets_goaway_then_the_close() -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = WsPeer(conn)

        async def forward(port: int, stream: Input, reply: Output) -> None:
            raise AssertionError("no stream should be forwarded")

        task = asyncio.create_task(portforward.serve_spdy(
            TunnelConn(WebSocket(conn, idle_timeout=30)), forward, str, idle_timeout=30, creation_timeout=5))
        peer.send(struct.pack(">HHI", 0x8003, 99, 0))
        events = await peer.events()
        spdy_bytes = b"".join(bytes(e.data) for e in events if isinstance(e, BytesMessage))
        reader = SpdyPeer(MemoryConn())
        reader.conn.to_client.put_nowait(spdy_bytes)
        reader.conn.to_client.put_nowait(b"")
        assert await reader.until_closed() == [GoAway(0, 1)]
        assert events[-1].code == CloseReason.NORMAL_CLOSURE  # type: ignore[attr-defined]
        await within(task)
    run(test())


# --- resize messages ----------------------------------------------------------------------------------------

class _Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def _sizes(*chunks: bytes) -> list[tuple[int, int]]:
    return [(s.width, s.height) async for s in decode_resizes(_Chunks(*chunks))]


def test_resize_messages_split_anywhere_are_read() -> None:
    assert asyncio.run(_sizes(b'{"Width":80,"Hei', b'ght":24}{"Width":100,"Height":30}\n')) == [(80, 24), (100, 30)]


def test_resize_values_out_of_range_or_of_the_wrong_type_are_ignored() -> None:
    chunks = b'{"Width":-1,"Height":5}{"Width":"80","Height":24}[1,2]{"Width":70000,"Height":1}{"Width":1,"Height":2}'
    assert asyncio.run(_sizes(chunks)) == [(1, 2)]


def test_garbage_on_the_resize_stream_is_read_to_its_end() -> None:
    # The stream is drained whatever it holds: unread, its data would hold up the whole connection.
    garbage = [b"{not json" + b"x" * 65536 for _ in range(40)]
    assert asyncio.run(_sizes(*garbage, b'}{"Width":9,"Height":9}')) == []
    drained = _Chunks(*garbage, b"tail")

    async def drain() -> None:
        async for _ in decode_resizes(drained):
            pass
    asyncio.run(drain())
    assert asyncio.run(drained.read()) == b""
