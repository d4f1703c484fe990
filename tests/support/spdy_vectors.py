"""SPDY/3 test vectors shared by the framing tests and ``script/spdy_vectors.py``, which regenerates them.

``go_client_frames.bin`` is what moby/spdystream's framer (client-go's) writes for ``CLIENT_FRAMES``: one
compression context across every frame. ``crishim_frames.bin`` is what crishim's ``encode`` wrote for
``SERVER_FRAMES``, and ``crishim_frames.go.jsonl`` what the Go framer read back from it, one frame a line, in
the shape ``describe`` gives a frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cri.streaming.spdy_frames import (
    DataFrame,
    Frame,
    GoAway,
    HeadersFrame,
    Ping,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
)

__all__ = ["CLIENT_FRAMES", "CRISHIM_BYTES", "CRISHIM_GO_VIEW", "FIXTURES", "GO_CLIENT_BYTES", "SERVER_FRAMES",
           "describe"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "spdy"
GO_CLIENT_BYTES = FIXTURES / "go_client_frames.bin"
CRISHIM_BYTES = FIXTURES / "crishim_frames.bin"
CRISHIM_GO_VIEW = FIXTURES / "crishim_frames.go.jsonl"


def _pair(stream_id: int, kind: str, request: int) -> SynStream:
    return SynStream(stream_id, {"port": ["8080"], "requestid": [str(request)], "streamtype": [kind]})


# What tests/fixtures/spdy/main.go writes (its clientFrames), as crishim's parser must read it.
CLIENT_FRAMES: list[Frame] = [
    _pair(1, "error", 0),
    _pair(3, "data", 0),
    SynStream(5, {"streamtype": ["stdin"]}),
    SynStream(7, {"streamtype": ["resize"]}, associated_stream_id=5, priority=7, flags=1),
    SynReply(2, {}),
    SynReply(4, {"x-reply": ["yes"]}),
    DataFrame(3, b"GET / HTTP/1.0\r\n\r\n"),
    DataFrame(5, b"last words", 1),
    DataFrame(3, b"", 1),
    RstStream(5, 5),
    Ping(1),
    Settings(((1, 4, 100), (0, 7, 65536))),
    WindowUpdate(3, 65536),
    HeadersFrame(1, {"trailer-values": ["one", "two"]}, 1),
    *[frame for i in range(200) for frame in (_pair(9 + 4 * i, "error", i + 1), _pair(11 + 4 * i, "data", i + 1))],
    GoAway(807, 0),
]

# What crishim sends, and frames of every other type, with many header blocks on one compression context.
SERVER_FRAMES: list[Frame] = [
    SynReply(1),
    SynReply(3, {"x-stream-protocol-version": ["v4.channel.k8s.io"]}),
    DataFrame(1, b"error forwarding port 80"),
    DataFrame(1, b"", 1),
    DataFrame(3, bytes(range(256)) * 64, 1),
    RstStream(3, 5),
    Ping(1),
    Ping(2),
    Settings(((0, 7, 262144),)),
    WindowUpdate(1, 1024),
    HeadersFrame(5, {"a": ["1"], "multi": ["x", "y", "z"]}),
    SynStream(2, {"streamtype": ["data"]}, associated_stream_id=1, priority=3, flags=1),
    *[SynReply(stream_id, {"requestid": [str(stream_id)]}) for stream_id in range(7, 7 + 2 * 300, 2)],
    GoAway(605, 1),
]


def describe(frame: Frame) -> dict[str, Any]:
    """A frame in the JSON shape main.go's ``describe`` prints (header names lowercase)."""
    headers = {k: list(v) for k, v in getattr(frame, "headers", {}).items()}
    match frame:
        case SynStream():
            return {"type": "syn_stream", "stream_id": frame.stream_id, "associated": frame.associated_stream_id,
                    "priority": frame.priority, "flags": frame.flags, "headers": headers}
        case SynReply():
            return {"type": "syn_reply", "stream_id": frame.stream_id, "flags": frame.flags, "headers": headers}
        case HeadersFrame():
            return {"type": "headers", "stream_id": frame.stream_id, "flags": frame.flags, "headers": headers}
        case DataFrame():
            return {"type": "data", "stream_id": frame.stream_id, "flags": frame.flags,
                    "data": frame.data.hex()}
        case RstStream():
            return {"type": "rst_stream", "stream_id": frame.stream_id, "status": frame.status}
        case Ping():
            return {"type": "ping", "id": frame.id}
        case GoAway():
            return {"type": "goaway", "last_good_stream_id": frame.last_good_stream_id, "status": frame.status}
        case Settings():
            return {"type": "settings", "flags": frame.flags, "entries": [list(e) for e in frame.entries]}
        case WindowUpdate():
            return {"type": "window_update", "stream_id": frame.stream_id, "delta": frame.delta}
    raise TypeError(f"not a frame: {frame!r}")
