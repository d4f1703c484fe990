"""What an exec or attach session sees of its client, whatever the transport: stdio streams, terminal resizes,
and the final status (k8s.io/apimachinery's metav1.Status, as the remotecommand protocols carry it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Input", "Output", "Session", "StreamOptions", "StreamStatus", "TerminalSize", "decode_resizes"]

# A resize message is two small numbers; anything longer is not one.
_MAX_RESIZE_MESSAGE = 4096


class Input(Protocol):
    async def read(self) -> bytes:
        """The next bytes from the client; b"" when it closed this stream."""
        ...


class Output(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None:
        """No more data: the client reads EOF."""
        ...


@dataclass(frozen=True, slots=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


@dataclass(frozen=True, slots=True)
class TerminalSize:
    width: int
    height: int


@dataclass
class Session:
    options: StreamOptions
    stdin: Input | None
    stdout: Output | None
    stderr: Output | None
    resize: Input | None
    # Set when the client went away: the session's work must stop.
    gone: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """metav1.Status as kubelet's streaming server writes it on the error stream."""

    status: str  # "Success" or "Failure"
    message: str = ""
    reason: str = ""
    code: int = 0
    causes: tuple[tuple[str, str], ...] = ()  # (reason, message)

    @classmethod
    def success(cls) -> StreamStatus:
        return cls("Success")

    @classmethod
    def exit_code(cls, code: int, argv: list[str]) -> StreamStatus:
        # The message containerd's CRI gives (Go's %v of the command).
        return cls("Failure", "command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(argv)}], exit code {code}", "NonZeroExitCode", causes=(("ExitCode", str(code)),))

    @classmethod
    def internal(cls, message: str) -> StreamStatus:
        return cls("Failure", f"Internal error occurred: {message}", "InternalError", 500)

    def to_json(self) -> bytes:
        document: dict[str, Any] = {}
        for key in ("status", "message", "reason"):
            if value := getattr(self, key):
                document[key] = value
        if self.causes:
            document["details"] = {"causes": [{"reason": r, "message": m} for r, m in self.causes]}
        if self.code:
            document["code"] = self.code
        return json.dumps(document, separators=(",", ":")).encode()


async def decode_resizes(stream: Input) -> AsyncIterator[TerminalSize]:
    """Terminal sizes from a stream of JSON objects ``{"Width": w, "Height": h}``, as client-go writes them."""
    decoder = json.JSONDecoder()
    buffer = ""
    while chunk := await stream.read():
        buffer += chunk.decode(errors="replace")
        while buffer.strip():
            text = buffer.lstrip()
            try:
                value, end = decoder.raw_decode(text)
            except json.JSONDecodeError:
                if len(text) > _MAX_RESIZE_MESSAGE:
                    # Not resize messages: dropped, and the stream read on, since its unread data would
                    # hold up every other stream of the connection.
                    buffer = ""
                break
            buffer = text[end:]
            if isinstance(value, dict):
                width, height = value.get("Width"), value.get("Height")
                if isinstance(width, int) and isinstance(height, int) and 0 <= width < 65536 and 0 <= height < 65536:
                    yield TerminalSize(width, height)
