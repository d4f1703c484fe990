"""A hostile or broken SPDY client against the server's SPDY connection, remotecommand's stream setup and
port-forward, over an in-memory connection: each case ends in GOAWAY and a closed connection, or a refused
stream on a connection that goes on — never an exception out of the server, never a wait without end."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from cri.streaming import portforward, remotecommand, spdy
from cri.streaming.session import Input, Output, StreamOptions
from cri.streaming.spdy import SpdyConnection, SpdyStream
from cri.streaming.spdy_frames import (
    DataFrame,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
)
from tests.support.memory_conn import MemoryConn, SpdyPeer, within

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(within(test(), 30))


def stream(stream_id: int, kind: str, **headers: str) -> SynStream:
    return SynStream(stream_id, {"streamtype": [kind], **{k: [v] for k, v in headers.items()}})


async def serving(idle_timeout: float = 30.0) -> tuple[MemoryConn, SpdyPeer, list[SpdyStream], asyncio.Task[None]]:
    conn = MemoryConn()
    accepted: list[SpdyStream] = []

    async def on_stream(s: SpdyStream) -> None:
        accepted.append(s)

    task = asyncio.create_task(SpdyConnection(conn, idle_timeout=idle_timeout).serve(on_stream))
    return conn, SpdyPeer(conn), accepted, task


async def assert_goaway(peer: SpdyPeer, task: asyncio.Task[None], last_good: int) -> None:
    frames = await peer.until_closed()
    assert frames[-1] == GoAway(last_good, RstStatus.PROTOCOL_ERROR)
    await within(task)  # serve returned, and raised nothing


def test_a_hostile_frame_mid_session_ends_the_connection_with_goaway() -> None:
    async def test() -> None:
        conn, peer, accepted, task = await serving()
        peer.send(stream(1, "error"))
        assert await peer.next() == SynReply(1)
        peer.send(DataFrame(1, b"hello"))
        assert await within(accepted[0].read()) == b"hello"
        peer.send_raw(struct.pack(">HHI", 0x8003, 77, 8) + b"\0" * 8)  # an unknown control frame type
        await assert_goaway(peer, task, 1)
        assert await within(accepted[0].read()) == b""  # the server side of the stream sees its end
    run(test)


@pytest.mark.parametrize("frame", [
    struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1",              # SPDY/2
    struct.pack(">HHI", 0x8003, 1, 0xFFFFFF),                      # a 16 MiB SYN_STREAM, head only
    struct.pack(">HHI", 0x8003, 3, 4) + b"\0\0\0\1",               # a truncated RST_STREAM
], ids=["version", "16MiB", "truncated"])
def test_malformed_frames_end_the_connection_with_goaway(frame: bytes) -> None:
    async def test() -> None:
        _, peer, _, task = await serving()
        peer.send(stream(1, "error"))
        assert await peer.next() == SynReply(1)
        peer.send_raw(frame)
        await assert_goaway(peer, task, 1)
    run(test)


def test_a_header_bomb_ends_the_connection_with_goaway() -> None:
    async def test() -> None:
        _, peer, _, task = await serving()
        peer.send(SynStream(1, {"streamtype": ["a" * (8 * 1024 * 1024)]}))
        await assert_goaway(peer, task, 0)
    run(test)


@pytest.mark.parametrize("second", [3, 2, 1], ids=["reused", "even", "lower"])
def test_a_stream_id_that_is_not_new_and_odd_ends_the_connection(second: int) -> None:
    async def test() -> None:
        _, peer, _, task = await serving()
        peer.send(stream(3, "error"))
        assert await peer.next() == SynReply(3)
        peer.send(stream(second, "data"))
        await assert_goaway(peer, task, 3)
    run(test)


def test_data_for_a_stream_that_does_not_exist_is_answered_with_a_reset() -> None:
    async def test() -> None:
        conn, peer, accepted, task = await serving()
        peer.send(DataFrame(9, b"who?"))
        assert await peer.next() == RstStream(9, RstStatus.INVALID_STREAM)
        peer.send(stream(1, "error"), Ping(7))
        assert [await peer.next(), await peer.next()] == [SynReply(1), Ping(7)]
        conn.hang_up()
        await within(task)
    run(test)


def test_streams_beyond_the_limit_are_refused_and_the_connection_goes_on() -> None:
    async def test() -> None:
        conn, peer, accepted, task = await serving()
        ids = [2 * i + 1 for i in range(spdy.MAX_STREAMS + 3)]
        peer.send(*[stream(i, "data") for i in ids])
        answers = [await peer.next() for _ in ids]
        assert answers[:spdy.MAX_STREAMS] == [SynReply(i) for i in ids[:spdy.MAX_STREAMS]]
        assert answers[spdy.MAX_STREAMS:] == [RstStream(i, RstStatus.REFUSED_STREAM) for i in ids[spdy.MAX_STREAMS:]]
        peer.send(DataFrame(1, b"still here"))
        assert await within(accepted[0].read()) == b"still here"
        conn.hang_up()
        await within(task)
    run(test)


def test_an_idle_connection_is_closed() -> None:
    async def test() -> None:
        _, peer, _, task = await serving(idle_timeout=0.2)
        assert await peer.until_closed() == [GoAway(0)]
        await within(task)
    run(test)


def test_a_client_that_hangs_up_mid_frame_ends_the_connection_quietly() -> None:
    async def test() -> None:
        conn, peer, _, task = await serving()
        peer.send_raw(struct.pack(">HHI", 0x8003, 1, 100) + b"\0" * 10)
        conn.hang_up()
        assert await peer.until_closed() == [GoAway(0)]
        await within(task)
    run(test)


# --- remotecommand's streams --------------------------------------------------------------------------------

OPTIONS = StreamOptions(stdin=True, stdout=True, stderr=False, tty=False)


def test_a_client_that_never_creates_all_its_streams_is_cut_off() -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = SpdyPeer(conn)
        opening = asyncio.create_task(remotecommand.open_spdy(conn, remotecommand.V4, OPTIONS, idle_timeout=30,
                                                              creation_timeout=0.3))
        peer.send(stream(1, "error"), stream(3, "stdin"))
        assert await within(opening) is None
        frames = await peer.until_closed()
        assert frames[-1] == GoAway(3)
    run(test)


def test_unexpected_and_duplicate_streams_are_refused_and_the_session_starts() -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = SpdyPeer(conn)
        opening = asyncio.create_task(remotecommand.open_spdy(conn, remotecommand.V4, OPTIONS, idle_timeout=30,
                                                              creation_timeout=5))
        peer.send(stream(1, "error"), stream(3, "bogus"), stream(5, "error"))
        assert [await peer.next() for _ in range(3)] == [
            SynReply(1), RstStream(3, RstStatus.REFUSED_STREAM), RstStream(5, RstStatus.REFUSED_STREAM)]
        peer.send(stream(7, "stdin"), stream(9, "stdout"))
        transport = await within(opening)
        assert transport is not None and [await peer.next() for _ in range(2)] == [SynReply(7), SynReply(9)]
        # Data on a refused stream goes nowhere; the session's own streams still flow.
        peer.send(DataFrame(3, b"x" * 100_000), DataFrame(7, b"input", 1))
        assert transport.session.stdin is not None
        assert await within(transport.session.stdin.read()) == b"input"
        conn.hang_up()
        await within(transport.session.gone.wait())
    run(test)


# --- port-forward -------------------------------------------------------------------------------------------

async def echo(port: int, stream: Input, reply: Output) -> None:
    while data := await stream.read():
        await reply.write(data)


def serve_forward(conn: MemoryConn, forward: Callable[[int, Input, Output], Awaitable[None]] = echo,
                  creation_timeout: float = 5.0) -> asyncio.Task[None]:
    return asyncio.create_task(portforward.serve_spdy(conn, forward, lambda port: f"port {port}", idle_timeout=30,
                                                      creation_timeout=creation_timeout))


@pytest.mark.parametrize("port", ["", "eighty", "0", "70000"])
def test_a_forward_stream_with_a_bad_port_is_refused(port: str) -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = SpdyPeer(conn)
        task = serve_forward(conn)
        peer.send(stream(1, "error", port=port, requestid="0"))
        assert await peer.next() == RstStream(1, RstStatus.REFUSED_STREAM)
        peer.send(stream(3, "error", port="80", requestid="1"), stream(5, "data", port="80", requestid="1"),
                  DataFrame(5, b"ping", 1))
        assert [await peer.next() for _ in range(3)] == [SynReply(3), SynReply(5), DataFrame(5, b"ping")]
        conn.hang_up()
        await within(task)
    run(test)


def test_half_pairs_time_out_and_free_their_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spdy, "MAX_STREAMS", 4)

    async def test() -> None:
        conn = MemoryConn()
        peer = SpdyPeer(conn)
        task = serve_forward(conn, creation_timeout=0.2)
        peer.send(*[stream(2 * i + 1, "error", port="80", requestid=str(i)) for i in range(4)])
        replies = [await peer.next() for _ in range(4)]
        assert replies == [SynReply(2 * i + 1) for i in range(4)]
        seen = [await peer.next() for _ in range(8)]
        for i in range(4):
            assert DataFrame(2 * i + 1, f"timed out waiting for streams of request {i}".encode()) in seen
            assert RstStream(2 * i + 1, RstStatus.CANCEL) in seen
        # Their slots are free again: a whole pair is served.
        peer.send(stream(11, "error", port="80", requestid="9"), stream(13, "data", port="80", requestid="9"),
                  DataFrame(13, b"again", 1))
        assert [await peer.next() for _ in range(3)] == [SynReply(11), SynReply(13), DataFrame(13, b"again")]
        conn.hang_up()
        await within(task)
    run(test)


def test_a_second_stream_of_the_same_kind_for_a_request_is_refused() -> None:
    async def test() -> None:
        conn = MemoryConn()
        peer = SpdyPeer(conn)
        task = serve_forward(conn)
        peer.send(stream(1, "error", port="80", requestid="0"), stream(3, "error", port="80", requestid="0"))
        assert [await peer.next() for _ in range(3)] == [
            SynReply(1), RstStream(3, RstStatus.REFUSED_STREAM), DataFrame(1, b"error stream already assigned")]
        # Data on the refused stream holds nothing up: the pair completes and is forwarded.
        peer.send(DataFrame(3, b"x" * 2_000_000), stream(5, "data", port="80", requestid="0"), DataFrame(5, b"ok", 1))
        assert await peer.next() == RstStream(3, RstStatus.INVALID_STREAM)
        assert [await peer.next() for _ in range(2)] == [SynReply(5), DataFrame(5, b"ok")]
        conn.hang_up()
        await within(task)
    run(test)
