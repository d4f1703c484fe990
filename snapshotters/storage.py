"""A snapshotter's own metadata: one SQLite database beside its snapshot folders.

Snapshots are numbered by the database (``id``); their folders are named by
that number, so a key of any length or character never becomes a path. Every
change runs in a transaction so a folder rename and its record land together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from snapshotters.snapshotter import Info, Kind, Usage
from sqlitedb import Database

__all__ = ["MetaStore", "SnapshotRecord", "StorageTx"]

_SCHEMA = [
    """
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        parent TEXT NOT NULL DEFAULT '',
        kind INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        inodes INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX snapshots_by_parent ON snapshots(parent);
    """,
]


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    id: int
    info: Info
    usage: Usage


class MetaStore:
    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA, synchronous="FULL", errors=_error)

    def open(self) -> None:
        self._db.open()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[StorageTx]:
        """A write; not ``durable``, it reaches the disk with the next durable one or a sync."""
        with self._db.write(durable=durable) as conn:
            yield StorageTx(conn)

    @contextmanager
    def read(self) -> Iterator[StorageTx]:
        """A consistent view for Stat, List and Mounts, never held up by a write."""
        with self._db.read() as conn:
            yield StorageTx(conn)


def _error(exc: sqlite3.Error) -> Exception:
    return Unavailable(f"snapshot metadata: {exc}")


class StorageTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, key: str) -> SnapshotRecord:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE key=?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r}: not found")
        return self._record(row)

    def create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str]) -> SnapshotRecord:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        if self._exists(key):
            raise AlreadyExists(f"snapshot {key!r}: already exists")
        if parent:
            parent_kind = self.get(parent).info.kind
            if parent_kind != Kind.COMMITTED:
                raise FailedPrecondition(f"parent {parent!r} is {parent_kind}, not Committed")
        now = _now()
        self._conn.execute(
            "INSERT INTO snapshots(key, parent, kind, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key, parent, int(kind), _dump(labels), now, now))
        return self.get(key)

    def commit(self, name: str, key: str, usage: Usage, labels: Mapping[str, str] | None) -> SnapshotRecord:
        """Turn Active ``key`` into Committed ``name``, keeping its folder id."""
        record = self.get(key)
        if record.info.kind != Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is {record.info.kind}, not Active")
        if self._exists(name):
            raise AlreadyExists(f"snapshot {name!r}: already exists")
        merged = dict(record.info.labels) if labels is None else dict(labels)
        self._conn.execute(
            """UPDATE snapshots SET key=?, kind=?, labels=?, updated_at=?, size=?, inodes=? WHERE id=?""",
            (name, int(Kind.COMMITTED), _dump(merged), _now(), usage.size, usage.inodes, record.id))
        return self.get(name)

    def rebase(self, key: str, parent: str) -> SnapshotRecord:
        """Put Active ``key`` on ``parent`` (Committed), e.g. a layer unpacked before the layers below it."""
        record = self.get(key)
        if record.info.kind != Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is {record.info.kind}, not Active")
        if parent and (parent_kind := self.get(parent).info.kind) != Kind.COMMITTED:
            raise FailedPrecondition(f"parent {parent!r} is {parent_kind}, not Committed")
        self._conn.execute("UPDATE snapshots SET parent=?, updated_at=? WHERE id=?", (parent, _now(), record.id))
        return self.get(key)

    def remove(self, key: str) -> SnapshotRecord:
        record = self.get(key)
        child = self._conn.execute("SELECT key FROM snapshots WHERE parent=? LIMIT 1", (key,)).fetchone()
        if child is not None:
            raise FailedPrecondition(f"cannot remove snapshot {key!r}: snapshot {child[0]!r} depends on it")
        self._conn.execute("DELETE FROM snapshots WHERE id=?", (record.id,))
        return record

    def set_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotRecord:
        self.get(key)
        self._conn.execute("UPDATE snapshots SET labels=?, updated_at=? WHERE key=?", (_dump(labels), _now(), key))
        return self.get(key)

    def all(self) -> list[SnapshotRecord]:
        return [self._record(row) for row in self._conn.execute(f"SELECT {_COLUMNS} FROM snapshots ORDER BY key")]

    def ids(self) -> set[int]:
        return {row[0] for row in self._conn.execute("SELECT id FROM snapshots")}

    def _exists(self, key: str) -> bool:
        return self._conn.execute("SELECT 1 FROM snapshots WHERE key=?", (key,)).fetchone() is not None

    def _record(self, row: tuple[int, str, str, int, str, str, str, int, int]) -> SnapshotRecord:
        sid, key, parent, kind, labels, created, updated, size, inodes = row
        info = Info(Kind(kind), key, parent, json.loads(labels), datetime.fromisoformat(created),
                    datetime.fromisoformat(updated))
        return SnapshotRecord(sid, info, Usage(size, inodes))

    def parent_ids(self, parent: str) -> tuple[int, ...]:
        """Folder ids of ``parent`` and its ancestors, nearest first, in one recursive query (asked only by
        those who need them: a chain 60 layers deep costs more than the rest of a lookup)."""
        if not parent:
            return ()
        rows = self._conn.execute(
            """WITH RECURSIVE chain(id, parent, depth) AS (
                   SELECT id, parent, 0 FROM snapshots WHERE key=?
                   UNION ALL
                   SELECT s.id, s.parent, chain.depth + 1 FROM snapshots s JOIN chain ON s.key = chain.parent)
               SELECT id FROM chain ORDER BY depth""", (parent,)).fetchall()
        if not rows:
            raise NotFound(f"parent snapshot {parent!r}: not found")
        return tuple(row[0] for row in rows)


_COLUMNS = "id, key, parent, kind, labels, created_at, updated_at, size, inodes"


def _dump(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(labels.items())))


def _now() -> str:
    return datetime.now(UTC).isoformat()
