"""Content-store views that do not depend on crishim: ctr's listing and blob files on disk."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

CONTENT_PLUGIN = "io.containerd.content.v1.content"

@dataclass(frozen=True)
class ContentRecord:
    digest: str
    labels: dict[str, str] = field(default_factory=dict)


def parse_ctr_content_ls(text: str) -> dict[str, ContentRecord]:
    """Parse `ctr content ls`: tab-padded columns DIGEST SIZE AGE LABELS (SIZE is humanised, so unused)."""
    records: dict[str, ContentRecord] = {}
    for line in text.splitlines()[1:]:
        columns = re.split(r"\t+", line.strip())
        if not columns or not columns[0].startswith("sha256:"):
            continue
        labels = _parse_labels(columns[3]) if len(columns) > 3 else {}
        records[columns[0]] = ContentRecord(columns[0], labels)
    return records


def _parse_labels(text: str) -> dict[str, str]:
    """ctr joins k=v pairs with ',', but distribution.source values are themselves comma-separated
    repository lists; a piece without '=' therefore continues the previous value."""
    labels: dict[str, str] = {}
    last: str | None = None
    for piece in text.split(","):
        if "=" in piece:
            last, value = piece.split("=", 1)
            labels[last] = value
        elif last is not None and piece:
            labels[last] += "," + piece
    return labels



def blob_dir(root: Path) -> Path:
    return root / CONTENT_PLUGIN / "blobs" / "sha256"


def blob_digests(root: Path) -> set[str]:
    directory = blob_dir(root)
    if not directory.exists():
        return set()
    return {f"sha256:{p.name}" for p in directory.iterdir() if p.is_file()}


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()
