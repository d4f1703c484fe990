"""The CRI container log format, as conmon's ``k8s-file`` driver writes it and kubelet reads it.

One line per chunk of output::

    2024-05-01T10:00:00.123456789+00:00 stdout F hello
    <RFC3339Nano timestamp>             <stream> <tag> <content>

The tag is ``F`` for a full line (its newline is not part of the content) and ``P`` for a partial one: output
that had no newline when conmon read it, continued by the next line of the same stream. conmon writes the
timestamp in local time with a numeric offset and always nine fraction digits; readers must accept ``Z`` and
shorter fractions too (runc's ``created`` uses them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from errdefs import DataLoss, InvalidArgument

__all__ = ["LogLine", "join", "parse_line", "parse_timestamp", "read_log"]

_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
_STREAMS = ("stdout", "stderr")
_TAGS = {b"F": False, b"P": True}


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp_ns: int  # since the epoch
    stream: str  # "stdout" or "stderr"
    partial: bool  # tag P: the content continues on the stream's next line
    content: bytes  # without the line's newline


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch for an RFC 3339 timestamp with up to nine fraction digits."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise InvalidArgument(f"not an RFC 3339 timestamp: {text!r}")
    seconds, fraction, zone = match.groups()
    # datetime keeps only microseconds, so the fraction is added separately to keep all nine digits.
    base = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return int(base.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def parse_line(line: bytes) -> LogLine:
    """One log line, with or without its trailing newline."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1].decode(errors="replace") not in _STREAMS or parts[2] not in _TAGS:
        raise DataLoss(f"not a CRI log line: {line[:200]!r}")
    try:
        timestamp = parse_timestamp(parts[0].decode())
    except (UnicodeDecodeError, InvalidArgument) as exc:
        raise DataLoss(f"bad timestamp in CRI log line: {line[:200]!r}") from exc
    content = parts[3] if len(parts) == 4 else b""
    return LogLine(timestamp, parts[1].decode(), _TAGS[parts[2]], content)


def read_log(path: Path) -> list[LogLine]:
    with path.open("rb") as file:
        return [parse_line(line) for line in file if line.strip()]


def join(lines: Iterable[LogLine], stream: str) -> bytes:
    """The stream's output as the container wrote it: partial lines glued, full lines ended with a newline."""
    return b"".join(line.content + (b"" if line.partial else b"\n") for line in lines if line.stream == stream)
