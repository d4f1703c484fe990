"""A minimal SPDY/3.1 client for one streaming exec, to time the exec path without crictl's process start-up.

It does what client-go does for ``crictl exec ID CMD`` (stdout and stderr, no stdin, no terminal): POST the
URL with ``Upgrade: SPDY/3.1`` and ``X-Stream-Protocol-Version: v4.channel.k8s.io``, open the ``error``,
``stdout`` and ``stderr`` streams, then read until the server has closed all three. The v4 error stream
carries the final status as JSON. A stream ends with FIN or, as client-go reads it, with RST_STREAM:
kubelet's streaming package (containerd's) writes the status and closes the connection, which resets the
error stream, while crishim half-closes it. Only what such a session needs is here: no flow control (a
command's output beyond the initial 64 KiB window per stream would stall), PINGs answered, the rest ignored.

Frames (SPDY draft 3): control ``1 | version(15) | type(16) | flags(8) | length(24) | payload``, data
``0 | stream id(31) | flags(8) | length(24) | data``. Header blocks are deflated with one zlib stream for
the connection, primed with the SPDY/3 dictionary; the server's are never inflated, since nothing in them
is needed.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cri.streaming.spdy_dictionary import HEADER_DICTIONARY  # the spec's constant, not crishim's logic

__all__ = ["ExecResult", "exec_url"]

_VERSION = 3
_SYN_STREAM, _SYN_REPLY, _RST_STREAM, _PING = 1, 2, 3, 6
_FIN = 0x01
_PROTOCOL = "v4.channel.k8s.io"
_STREAMS = {1: "error", 3: "stdout", 5: "stderr"}  # client streams have odd ids, opened in this order


@dataclass
class ExecResult:
    status: dict[str, Any]
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class _Reader:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the streaming server closed the connection mid-session")
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def exec_url(url: str, timeout: float = 30.0) -> ExecResult:
    """Run the exec the URL was made for; its status (``{"status": "Success"}`` when it exited 0) and output."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"expected a plain http URL with a port, got {url}")
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        _upgrade(sock, reader, parts.netloc, parts.path)
        compressor = zlib.compressobj(zdict=HEADER_DICTIONARY)
        sock.sendall(b"".join(_syn_stream(compressor, sid, {"streamtype": kind}) for sid, kind in _STREAMS.items()))
        return _read_session(sock, reader)


def _upgrade(sock: socket.socket, reader: _Reader, host: str, path: str) -> None:
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                  f"X-Stream-Protocol-Version: {_PROTOCOL}\r\nContent-Length: 0\r\n\r\n").encode())
    while b"\r\n\r\n" not in reader.buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the streaming server closed the connection during the upgrade")
        reader.buffer += chunk
    head, _, rest = bytes(reader.buffer).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if status_line.split()[1:2] != ["101"]:
        raise ConnectionError(f"upgrade refused: {status_line}")
    reader.buffer = bytearray(rest)


def _syn_stream(compressor: Any, stream_id: int, headers: dict[str, str]) -> bytes:
    block = struct.pack(">I", len(headers))
    for name, value in headers.items():
        block += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    compressed = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed
    return _control(_SYN_STREAM, 0, payload)


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | _VERSION, kind, (flags << 24) | len(payload)) + payload


def _read_session(sock: socket.socket, reader: _Reader) -> ExecResult:
    data: dict[int, bytearray] = {sid: bytearray() for sid in _STREAMS}
    open_streams = set(_STREAMS)
    while open_streams:
        first, flags_length = struct.unpack(">II", reader.exactly(8))
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        payload = reader.exactly(length)
        if not first & 0x80000000:  # a data frame
            stream_id = first & 0x7FFFFFFF
            data.setdefault(stream_id, bytearray()).extend(payload)
        else:
            stream_id, ended = _control_frame(sock, first & 0xFFFF, payload)
            flags |= _FIN if ended else 0
        if flags & _FIN:
            open_streams.discard(stream_id)
    status = json.loads(bytes(data[1])) if data[1] else {"status": "Success"}
    return ExecResult(status, bytes(data[3]), bytes(data[5]))


def _control_frame(sock: socket.socket, kind: int, payload: bytes) -> tuple[int, bool]:
    """Handle one control frame: the stream it is about (0 for the connection), and whether it ends it."""
    if kind == _PING:
        sock.sendall(_control(_PING, 0, payload))
    elif kind == _RST_STREAM:
        return int(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF), True
    elif kind == _SYN_REPLY:
        return int(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF), False
    return 0, False
