"""Malformed and hostile SPDY/3 input to the frame parser: each is a ProtocolError (the connection is then
closed with GOAWAY), never another exception, and nothing makes the parser hold more than a frame's worth."""

from __future__ import annotations

import struct
import zlib

import pytest

from cri.streaming.spdy_dictionary import HEADER_DICTIONARY
from cri.streaming.spdy_frames import DataFrame, FrameParser, ProtocolError, SynStream


def control(kind: int, payload: bytes, *, version: int = 3, flags: int = 0, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">HHB", 0x8000 | version, kind, flags) + size.to_bytes(3, "big") + payload


def block(pairs: list[tuple[bytes, bytes]], compressor: zlib._Compress | None = None) -> bytes:
    raw = struct.pack(">I", len(pairs)) + b"".join(
        struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v for n, v in pairs)
    deflate = compressor or zlib.compressobj(zdict=HEADER_DICTIONARY)
    return deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)


def syn_stream(stream_id: int, header_block: bytes) -> bytes:
    return control(1, struct.pack(">IIBB", stream_id, 0, 0, 0) + header_block)


def parse(data: bytes) -> list[object]:
    return list(FrameParser().feed(data))


def test_a_hand_made_syn_stream_is_read() -> None:
    assert parse(syn_stream(1, block([(b"streamtype", b"error")]))) == [SynStream(1, {"streamtype": ["error"]})]


@pytest.mark.parametrize("cut", [1, 4, 7, 8, 12, 20])
def test_a_truncated_frame_waits_for_the_rest(cut: int) -> None:
    whole = syn_stream(1, block([(b"streamtype", b"error")]))
    parser = FrameParser()
    assert list(parser.feed(whole[:cut])) == []
    assert list(parser.feed(whole[cut:])) == [SynStream(1, {"streamtype": ["error"]})]


@pytest.mark.parametrize("frame", [
    control(3, b"\0\0\0\1"),                              # RST_STREAM without a status
    control(6, b"\0\0"),                                  # PING of two bytes
    control(7, b"\0\0\0\1"),                              # GOAWAY without a status
    control(9, b"\0\0\0\1\0\0"),                          # WINDOW_UPDATE cut short
    control(4, b"\0\0\0\5" + b"\0" * 8),                  # SETTINGS claiming five entries, holding one
    control(1, b"\0\0\0\1\0\0"),                          # SYN_STREAM without its header block
    control(2, b"\0\0"),                                  # SYN_REPLY without a stream id
    syn_stream(1, b""),                                   # SYN_STREAM with an empty header block
], ids=["rst", "ping", "goaway", "window", "settings", "syn_stream", "syn_reply", "empty_block"])
def test_a_control_frame_whose_payload_is_too_short_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(frame)


def test_a_16_mib_control_frame_is_refused_from_its_head() -> None:
    # Only the 8-byte head has arrived: the parser must not wait for (and buffer) 16 MiB of header block.
    with pytest.raises(ProtocolError, match="control frame"):
        parse(control(1, b"", length=0xFFFFFF))


def test_a_16_mib_data_frame_is_legal() -> None:
    data = b"d" * 0xFFFFFF
    (frame,) = parse(struct.pack(">IB", 1, 0) + len(data).to_bytes(3, "big") + data)
    assert frame == DataFrame(1, data)


@pytest.mark.parametrize("version", [2, 4, 0x7FFF])
def test_another_spdy_version_is_a_protocol_error(version: int) -> None:
    with pytest.raises(ProtocolError, match="version"):
        parse(control(6, b"\0\0\0\1", version=version))


@pytest.mark.parametrize("kind", [0, 5, 10, 0xFFFF])
def test_unknown_control_frame_types_are_a_protocol_error(kind: int) -> None:
    with pytest.raises(ProtocolError, match="unknown control frame"):
        parse(control(kind, b"\0" * 8))


def test_a_header_block_that_inflates_without_end_is_refused() -> None:
    bomb = block([(b"streamtype", b"a" * (64 * 1024 * 1024))])
    assert len(bomb) < 128 * 1024
    with pytest.raises(ProtocolError, match="inflates to more than"):
        parse(syn_stream(1, bomb))


@pytest.mark.parametrize("size", [64 * 1024 - 27, 64 * 1024 - 26, 64 * 1024 - 25, 64 * 1024])
def test_a_header_block_at_the_limit_is_refused_or_read_whole(size: int) -> None:
    # The block is 26 bytes besides the value: right at the limit nothing may be cut off silently.
    value = b"v" * size
    compressor = zlib.compressobj(zdict=HEADER_DICTIONARY)
    data = syn_stream(1, block([(b"streamtype", value)], compressor)) + syn_stream(3, block(
        [(b"streamtype", b"data")], compressor))
    try:
        frames = parse(data)
    except ProtocolError as exc:
        assert "inflates to more than" in str(exc)
    else:
        assert frames == [SynStream(1, {"streamtype": [value.decode()]}), SynStream(3, {"streamtype": ["data"]})]


def test_a_header_block_that_is_not_zlib_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="does not inflate"):
        parse(syn_stream(1, b"\x78\x9c not deflate at all"))


def test_a_header_block_with_a_wrong_dictionary_is_a_protocol_error() -> None:
    other = zlib.compressobj(zdict=b"some other dictionary")
    with pytest.raises(ProtocolError):
        parse(syn_stream(1, block([(b"streamtype", b"error")], other)))


@pytest.mark.parametrize("pairs", [
    [(b"StreamType", b"error")],
    [(b"streamtype", b"error"), (b"streamtype", b"data")],
    [(b"", b"error")],
    [(b"streamtype", b"\xff\xfe")],
], ids=["uppercase", "duplicate", "empty_name", "not_utf8"])
def test_bad_header_names_and_values_are_a_protocol_error(pairs: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ProtocolError):
        parse(syn_stream(1, block(pairs)))


def test_a_header_block_claiming_a_million_pairs_is_a_protocol_error() -> None:
    deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)
    raw = struct.pack(">I", 1_000_000)
    with pytest.raises(ProtocolError, match="pairs"):
        parse(syn_stream(1, deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)))


def test_a_header_length_beyond_the_block_is_a_protocol_error() -> None:
    deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)
    raw = struct.pack(">II", 1, 0xFFFFFFFF) + b"name"
    with pytest.raises(ProtocolError, match="truncated"):
        parse(syn_stream(1, deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)))


def test_stream_id_zero_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse(syn_stream(0, block([(b"streamtype", b"error")])))
    with pytest.raises(ProtocolError, match="stream 0"):
        parse(struct.pack(">IB", 0, 0) + b"\0\0\1x")
