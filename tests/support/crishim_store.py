"""crishim's own record of content labels, read from its metadata database while the daemon is stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

METADATA_DB = Path("io.containerd.metadata.v1.sqlite") / "meta.db"


@dataclass(frozen=True)
class StoredContent:
    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)


def stored_content(root: Path, namespace: str = "k8s.io") -> dict[str, StoredContent]:
    # Imported here: the store is code under test, and the fixtures must load without it.
    from store.metadata import MetadataDB

    db = MetadataDB(root / METADATA_DB).open()
    try:
        records = db.list_content(namespace)
        return {str(r.digest): StoredContent(str(r.digest), int(r.size), dict(r.labels)) for r in records}
    finally:
        close = getattr(db, "close", None)
        if callable(close):
            close()
