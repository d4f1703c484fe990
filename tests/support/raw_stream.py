"""A streaming URL driven by hand over a plain socket: any HTTP head, the SPDY/3.1 upgrade, then frames (with
crishim's framing, itself checked against moby/spdystream's in tests/unit/test_spdy_frames.py). Every read has
a deadline: a server that never answers fails the test instead of hanging it."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from cri.streaming.spdy_frames import Frame, FrameParser, HeaderCompressor, encode

__all__ = ["RawStream"]

TIMEOUT = 15.0


class RawStream:
    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        self.path = parts.path
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.timeout = timeout
        self._buffer = b""
        self._compressor = HeaderCompressor()
        self._parser = FrameParser()
        self._frames: list[Frame] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- HTTP ----------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, headers: dict[str, str] | None = None, method: str = "POST", path: str | None = None) -> None:
        lines = [f"{method} {path or self.path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def response_status(self) -> int:
        """The status of the server's response head (the head is consumed, what follows stays buffered)."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self._recv()
            if not chunk:
                raise AssertionError(f"connection closed before a response head: {self._buffer!r}")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        return int(head.split(b" ", 2)[1])

    def upgrade_spdy(self, protocol: str = "v4.channel.k8s.io") -> None:
        self.request({"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol})
        status = self.response_status()
        assert status == 101, f"upgrade answered {status}"

    def read_to_end(self) -> bytes:
        """Everything until the server closes the connection."""
        data, self._buffer = self._buffer, b""
        while chunk := self._recv():
            data += chunk
        return data

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""
        except TimeoutError:
            raise AssertionError(f"the server neither answered nor closed within {self.timeout} s") from None

    # --- SPDY ----------------------------------------------------------------------------------------------

    def send_frames(self, *frames: Frame) -> None:
        self.send(b"".join(encode(frame, self._compressor) for frame in frames))

    def next_frame(self) -> Frame | None:
        """The server's next frame; None when it closed the connection."""
        while not self._frames:
            data, self._buffer = self._buffer or self._recv(), b""
            if not data:
                return None
            self._frames.extend(self._parser.feed(data))
        return self._frames.pop(0)

    def frames_until_closed(self, deadline: float = TIMEOUT) -> list[Frame]:
        frames = []
        end = time.monotonic() + deadline
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
            if time.monotonic() > end:
                raise AssertionError(f"the server kept the connection open past {deadline} s: {frames[-5:]}")
        return frames
