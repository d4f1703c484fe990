"""Parsers for the ctr listings the seed walkthrough shows: content, images, snapshots, plugins."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContentRow:
    digest: str
    size: str  # humanised ("1.57kB"), compared as printed
    labels: dict[str, str] = field(default_factory=dict)


def parse_content_ls(text: str) -> list[ContentRow]:
    """DIGEST SIZE AGE LABELS, tab-separated; AGE is left out. Label order is Go's map order (random), so
    labels are parsed; a piece without '=' continues the previous value (distribution.source lists)."""
    rows = []
    for line in text.splitlines()[1:]:
        columns = re.split(r"\t+", line.strip())
        if not columns or not columns[0].startswith("sha256:"):
            continue
        labels: dict[str, str] = {}
        last = None
        for piece in (columns[3].split(",") if len(columns) > 3 else []):
            if "=" in piece:
                last, value = piece.split("=", 1)
                labels[last] = value
            elif last is not None and piece:
                labels[last] += "," + piece
        rows.append(ContentRow(columns[0], columns[1], labels))
    return rows


def columns(text: str) -> list[list[str]]:
    """Whitespace-separated columns of every line after the header (ctr pads with spaces)."""
    return [line.split() for line in text.splitlines()[1:] if line.strip()]


def header(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[0].split() if lines else []


def grep_plugins(text: str, word: str = "snapshot") -> dict[tuple[str, str], tuple[str, ...]]:
    """`ctr plugin ls | grep snapshot`: (TYPE, ID) -> (PLATFORMS, STATUS)."""
    found = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if word in line and len(parts) >= 4:
            found[(parts[0], parts[1])] = tuple(parts[2:])
    return found
