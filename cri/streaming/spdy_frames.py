"""SPDY/3 frames on the wire, without I/O: what kubelet's and client-go's streaming code (moby/spdystream over
golang.org/x/net/spdy framing) sends after an ``Upgrade: SPDY/3.1`` handshake.

A control frame is ``1 | version(15) | type(16) | flags(8) | length(24) | payload``; a data frame is
``0 | stream id(31) | flags(8) | length(24) | data``. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a
count and length-prefixed lowercase names and values, deflated with one zlib stream per direction for the
whole connection, primed with the SPDY/3 dictionary and flushed (Z_SYNC_FLUSH) at the end of each frame.

``FrameParser`` takes bytes as they arrive and yields whole frames; every malformed input is a
``ProtocolError``, never another exception, so a hostile peer can only get its connection closed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cri.streaming.spdy_dictionary import HEADER_DICTIONARY

__all__ = [
    "FLAG_FIN",
    "DataFrame",
    "Frame",
    "FrameParser",
    "GoAway",
    "HeaderCompressor",
    "Headers",
    "HeadersFrame",
    "Ping",
    "ProtocolError",
    "RstStatus",
    "RstStream",
    "Settings",
    "SynReply",
    "SynStream",
    "WindowUpdate",
    "encode",
]

VERSION = 3
FLAG_FIN = 0x01
MAX_STREAM_ID = 0x7FFFFFFF
MAX_FRAME_LENGTH = 0xFFFFFF
# Header blocks of these protocols are a handful of short values; a larger one is an attack.
MAX_HEADER_BLOCK = 64 * 1024
MAX_HEADER_PAIRS = 256
# A control frame is a few fixed fields and at most one such block (deflate can grow it a little); a longer
# one is refused from its head, before 16 MiB of it are buffered.
MAX_CONTROL_FRAME = MAX_HEADER_BLOCK + 1024

_SYN_STREAM, _SYN_REPLY, _RST_STREAM, _SETTINGS, _NOOP, _PING, _GOAWAY, _HEADERS, _WINDOW_UPDATE = range(1, 10)

Headers = Mapping[str, Sequence[str]]


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot go on."""


class RstStatus:
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_stream_id: int = 0
    priority: int = 0
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway | WindowUpdate


class HeaderCompressor:
    """One direction's header compression: a zlib stream that lives as long as the connection."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=HEADER_DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            key = name.lower().encode()
            value = b"\0".join(v.encode() for v in values)
            raw += [struct.pack(">I", len(key)), key, struct.pack(">I", len(value)), value]
        return self._deflate.compress(b"".join(raw)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError(f"header block inflates to more than {MAX_HEADER_BLOCK} bytes")
        return _parse_header_block(raw)


def _parse_header_block(raw: bytes) -> dict[str, list[str]]:
    view = _Reader(raw)
    count = view.u32()
    if count > MAX_HEADER_PAIRS:
        raise ProtocolError(f"header block has {count} pairs")
    headers: dict[str, list[str]] = {}
    for _ in range(count):
        name = view.string()
        if not name or name != name.lower():
            raise ProtocolError(f"header name {name!r} is empty or not lowercase")
        if name in headers:
            raise ProtocolError(f"header {name!r} appears twice")
        headers[name] = view.string().split("\0")
    if view.remaining:
        raise ProtocolError("trailing bytes after the header block")
    return headers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise ProtocolError("header block is truncated")
        chunk = self._data[self._at:self._at + n]
        self._at += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> str:
        try:
            return self.take(self.u32()).decode()
        except UnicodeDecodeError:
            raise ProtocolError("header is not UTF-8") from None


class FrameParser:
    """Bytes in, frames out. Keeps the peer's header decompressor, which spans every frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buffer += data
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if self._buffer[0] & 0x80 and length > MAX_CONTROL_FRAME:
                raise ProtocolError(f"control frame of {length} bytes")
            if len(self._buffer) < 8 + length:
                return
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            yield self._frame(head, payload)

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        first, flags = struct.unpack(">IB", head[:5])
        if not first & 0x80000000:
            stream_id = first & MAX_STREAM_ID
            if stream_id == 0:
                raise ProtocolError("data frame on stream 0")
            return DataFrame(stream_id, payload, flags)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}, not {VERSION}")
        return self._control(kind, flags, payload)

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame:
        try:
            match kind:
                case 1:  # SYN_STREAM
                    stream_id, associated, priority = struct.unpack(">IIB", payload[:9])
                    return SynStream(_stream_id(stream_id), self._headers.decompress(payload[10:]),
                                     associated & MAX_STREAM_ID, priority >> 5, flags)
                case 2:  # SYN_REPLY
                    (stream_id,) = struct.unpack(">I", payload[:4])
                    return SynReply(_stream_id(stream_id), self._headers.decompress(payload[4:]), flags)
                case 3:  # RST_STREAM
                    stream_id, status = struct.unpack(">II", _exact(payload, 8))
                    return RstStream(stream_id & MAX_STREAM_ID, status)
                case 4:  # SETTINGS
                    (count,) = struct.unpack(">I", payload[:4])
                    body = _exact(payload[4:], 8 * count)
                    entries = []
                    for at in range(0, len(body), 8):
                        flags_id, value = struct.unpack(">II", body[at:at + 8])
                        entries.append((flags_id >> 24, flags_id & 0xFFFFFF, value))
                    return Settings(tuple(entries), flags)
                case 6:  # PING
                    return Ping(struct.unpack(">I", _exact(payload, 4))[0])
                case 7:  # GOAWAY
                    last, status = struct.unpack(">II", _exact(payload, 8))
                    return GoAway(last & MAX_STREAM_ID, status)
                case 8:  # HEADERS
                    (stream_id,) = struct.unpack(">I", payload[:4])
                    return HeadersFrame(_stream_id(stream_id), self._headers.decompress(payload[4:]), flags)
                case 9:  # WINDOW_UPDATE
                    stream_id, delta = struct.unpack(">II", _exact(payload, 8))
                    return WindowUpdate(stream_id & MAX_STREAM_ID, delta & 0x7FFFFFFF)
        except struct.error:
            raise ProtocolError(f"control frame of type {kind} is truncated") from None
        raise ProtocolError(f"unknown control frame type {kind}")


def _exact(payload: bytes, length: int) -> bytes:
    if len(payload) != length:
        raise ProtocolError(f"control frame payload is {len(payload)} bytes, not {length}")
    return payload


def _stream_id(raw: int) -> int:
    stream_id = raw & MAX_STREAM_ID
    if stream_id == 0:
        raise ProtocolError("stream id 0")
    return stream_id


def encode(frame: Frame, headers: HeaderCompressor) -> bytes:
    """The frame's bytes; header blocks go through this direction's compressor (order matters)."""
    if isinstance(frame, DataFrame):
        if len(frame.data) > MAX_FRAME_LENGTH:
            raise ValueError("data frame too long")
        return struct.pack(">IB", frame.stream_id, frame.flags) + len(frame.data).to_bytes(3, "big") + frame.data
    kind, flags, payload = _control_payload(frame, headers)
    return struct.pack(">HHB", 0x8000 | VERSION, kind, flags) + len(payload).to_bytes(3, "big") + payload


def _control_payload(frame: Frame, headers: HeaderCompressor) -> tuple[int, int, bytes]:
    match frame:
        case SynStream():
            return _SYN_STREAM, frame.flags, (
                struct.pack(">IIBB", frame.stream_id, frame.associated_stream_id, frame.priority << 5, 0)
                + headers.compress(frame.headers))
        case SynReply():
            return _SYN_REPLY, frame.flags, struct.pack(">I", frame.stream_id) + headers.compress(frame.headers)
        case HeadersFrame():
            return _HEADERS, frame.flags, struct.pack(">I", frame.stream_id) + headers.compress(frame.headers)
        case RstStream():
            return _RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
        case Settings():
            body = b"".join(struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.entries)
            return _SETTINGS, frame.flags, struct.pack(">I", len(frame.entries)) + body
        case Ping():
            return _PING, 0, struct.pack(">I", frame.id)
        case GoAway():
            return _GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status)
        case WindowUpdate():
            return _WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta)
    raise TypeError(f"not a frame: {frame!r}")
