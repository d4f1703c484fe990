"""The metadata database: namespaces, images, content labels and leases.

One SQLite file through ``sqlitedb``: writes in short IMMEDIATE transactions,
queries in read transactions a write never holds up. The constructor does no
I/O; ``open`` creates the file and migrates it. The schema is versioned with
``PRAGMA user_version``; each entry of ``_MIGRATIONS`` moves it one version
forward, inside a transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from errdefs import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from sqlitedb import Database
from store.descriptor import Descriptor
from store.digest import Digest

__all__ = ["ContentRecord", "ImageRecord", "Lease", "MetadataDB", "Tx"]

_MIGRATIONS = [
    """
    CREATE TABLE namespaces (
        name TEXT PRIMARY KEY, labels TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
    CREATE TABLE images (
        namespace TEXT NOT NULL REFERENCES namespaces(name), name TEXT NOT NULL,
        media_type TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, name));
    CREATE INDEX images_by_digest ON images(namespace, digest);
    CREATE TABLE content (
        namespace TEXT NOT NULL REFERENCES namespaces(name), digest TEXT NOT NULL,
        size INTEGER NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, digest));
    CREATE TABLE leases (
        namespace TEXT NOT NULL REFERENCES namespaces(name), id TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,
        PRIMARY KEY (namespace, id));
    CREATE TABLE lease_resources (
        namespace TEXT NOT NULL, lease_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
        PRIMARY KEY (namespace, lease_id, kind, key),
        FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id) ON DELETE CASCADE);
    """,
    """
    CREATE TABLE runtime_objects (
        namespace TEXT NOT NULL REFERENCES namespaces(name), kind TEXT NOT NULL, id TEXT NOT NULL,
        name TEXT NOT NULL, doc TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, kind, id), UNIQUE (namespace, kind, name));
    """,
    # What ctr writes on an imported image's target (its name in the archive).
    """
    ALTER TABLE images ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}';
    """,
]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContentRecord:
    digest: Digest
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


class MetadataDB:
    def __init__(self, path: Path) -> None:
        self._db = Database(path, _MIGRATIONS, synchronous="NORMAL", errors=_error, foreign_keys=True)

    def open(self) -> MetadataDB:
        """Create the file if need be and bring its schema up to date; ``self``, for chaining."""
        self._db.open()
        return self

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic unit of reads and writes; rolled back if the block raises."""
        with self._db.write() as conn:
            yield Tx(conn)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent view for queries, never held up by a write; writing in it fails."""
        with self._db.read() as conn:
            yield Tx(conn)

    # Conveniences for single reads.
    def list_images(self, namespace: str) -> list[ImageRecord]:
        with self.read() as tx:
            return tx.list_images(namespace)

    def get_image(self, namespace: str, name: str) -> ImageRecord:
        with self.read() as tx:
            return tx.get_image(namespace, name)

    def list_content(self, namespace: str) -> list[ContentRecord]:
        with self.read() as tx:
            return tx.list_content(namespace)

    def get_content(self, namespace: str, digest: Digest) -> ContentRecord:
        with self.read() as tx:
            return tx.get_content(namespace, digest)


def _error(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return AlreadyExists(f"metadata: {exc}")
    return Unavailable(f"metadata database: {exc}")


class Tx:
    """Reads and writes inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def ensure_namespace(self, namespace: str) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO namespaces(name, created_at) VALUES (?, ?)", (namespace, _now()))

    def namespaces(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT name FROM namespaces ORDER BY name")]

    def create_namespace(self, namespace: str, labels: Mapping[str, str] | None = None) -> None:
        try:
            self._conn.execute("INSERT INTO namespaces(name, labels, created_at) VALUES (?, ?, ?)",
                               (namespace, _labels(labels or {}), _now()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"namespace {namespace!r}: already exists") from None

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        row = self._conn.execute("SELECT labels FROM namespaces WHERE name=?", (namespace,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {namespace!r}: not found")
        labels: dict[str, str] = json.loads(row[0])
        return labels

    def set_namespace_labels(self, namespace: str, labels: Mapping[str, str]) -> None:
        """Replace a namespace's labels entirely."""
        cur = self._conn.execute("UPDATE namespaces SET labels=? WHERE name=?", (_labels(labels), namespace))
        if cur.rowcount == 0:
            raise NotFound(f"namespace {namespace!r}: not found")

    def delete_namespace(self, namespace: str) -> None:
        """Remove an empty namespace; one still holding images, blobs or leases stays."""
        held = [what for what, table in (("images", "images"), ("blobs", "content"), ("leases", "leases"))
                if self._conn.execute(f"SELECT 1 FROM {table} WHERE namespace=? LIMIT 1", (namespace,)).fetchone()]
        if held:
            raise FailedPrecondition(f"namespace {namespace!r} must be empty, but it still has {', '.join(held)}")
        cur = self._conn.execute("DELETE FROM namespaces WHERE name=?", (namespace,))
        if cur.rowcount == 0:
            raise NotFound(f"namespace {namespace!r}: not found")

    # Images.
    def put_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        """Create or update an image; ``created_at`` survives an update, as in containerd."""
        self.ensure_namespace(namespace)
        now = _now()
        target = image.target
        self._conn.execute(
            """INSERT INTO images(namespace, name, media_type, digest, size, labels, annotations, created_at,
                 updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(namespace, name) DO UPDATE SET media_type=excluded.media_type,
                 digest=excluded.digest, size=excluded.size, labels=excluded.labels,
                 annotations=excluded.annotations, updated_at=excluded.updated_at""",
            (namespace, image.name, target.media_type, str(target.digest), target.size,
             _labels(image.labels), _labels(target.annotations), now, now),
        )
        return self.get_image(namespace, image.name)

    def create_image(self, namespace: str, image: ImageRecord) -> ImageRecord:
        """Add an image; unlike ``put_image`` a taken name is an error."""
        if self._conn.execute("SELECT 1 FROM images WHERE namespace=? AND name=?",
                              (namespace, image.name)).fetchone():
            raise AlreadyExists(f"image {image.name!r}: already exists")
        return self.put_image(namespace, image)

    def get_image(self, namespace: str, name: str) -> ImageRecord:
        row = self._conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE namespace=? AND name=?", (namespace, name)
        ).fetchone()
        if row is None:
            raise NotFound(f"image {name!r}: not found")
        return _image(row)

    def list_images(self, namespace: str) -> list[ImageRecord]:
        rows = self._conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE namespace=? ORDER BY name", (namespace,))
        return [_image(row) for row in rows]

    def delete_image(self, namespace: str, name: str) -> None:
        cur = self._conn.execute("DELETE FROM images WHERE namespace=? AND name=?", (namespace, name))
        if cur.rowcount == 0:
            raise NotFound(f"image {name!r}: not found")


    # Content.
    def put_content(self, namespace: str, digest: Digest, size: int,
                    labels: Mapping[str, str] | None = None) -> None:
        """Record a blob in a namespace, merging the given labels into any it has."""
        self.ensure_namespace(namespace)
        merged: dict[str, str] = {}
        with contextlib.suppress(NotFound):
            merged = dict(self.get_content(namespace, digest).labels)
        merged.update(labels or {})
        now = _now()
        self._conn.execute(
            """INSERT INTO content(namespace, digest, size, labels, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(namespace, digest) DO UPDATE SET labels=excluded.labels,
                 updated_at=excluded.updated_at""",
            (namespace, str(digest), size, _labels(merged), now, now),
        )

    def set_content_labels(self, namespace: str, digest: Digest, labels: Mapping[str, str]) -> None:
        """Replace a blob's labels entirely."""
        cur = self._conn.execute(
            "UPDATE content SET labels=?, updated_at=? WHERE namespace=? AND digest=?",
            (_labels(dict(labels)), _now(), namespace, str(digest)))
        if cur.rowcount == 0:
            raise NotFound(f"content {digest}: not found")

    def get_content(self, namespace: str, digest: Digest) -> ContentRecord:
        row = self._conn.execute(
            f"SELECT {_CONTENT_COLUMNS} FROM content WHERE namespace=? AND digest=?",
            (namespace, str(digest))).fetchone()
        if row is None:
            raise NotFound(f"content {digest}: not found")
        return _content(row)

    def list_content(self, namespace: str) -> list[ContentRecord]:
        rows = self._conn.execute(
            f"SELECT {_CONTENT_COLUMNS} FROM content WHERE namespace=? ORDER BY digest", (namespace,))
        return [_content(row) for row in rows]

    def delete_content(self, namespace: str, digest: Digest) -> None:
        self._conn.execute("DELETE FROM content WHERE namespace=? AND digest=?", (namespace, str(digest)))

    def content_digests(self) -> set[Digest]:
        """Every blob some namespace still records."""
        return {Digest.parse(row[0]) for row in self._conn.execute("SELECT DISTINCT digest FROM content")}

    # Leases.
    def create_lease(self, namespace: str, lease: Lease) -> Lease:
        self.ensure_namespace(namespace)
        try:
            self._conn.execute("INSERT INTO leases(namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                               (namespace, lease.id, _labels(lease.labels), _now()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"lease {lease.id!r}: already exists") from None
        return lease

    def delete_lease(self, namespace: str, lease_id: str) -> None:
        cur = self._conn.execute("DELETE FROM leases WHERE namespace=? AND id=?", (namespace, lease_id))
        if cur.rowcount == 0:
            raise NotFound(f"lease {lease_id!r}: not found")

    def list_leases(self, namespace: str) -> list[Lease]:
        rows = self._conn.execute(
            "SELECT id, labels, created_at FROM leases WHERE namespace=? ORDER BY id", (namespace,))
        return [Lease(i, json.loads(labels), _parse_time(created)) for i, labels, created in rows]

    def add_lease_resource(self, namespace: str, lease_id: str, kind: str, key: str) -> None:
        try:
            self._conn.execute(
                "INSERT OR IGNORE INTO lease_resources(namespace, lease_id, kind, key) VALUES (?, ?, ?, ?)",
                (namespace, lease_id, kind, key))
        except sqlite3.IntegrityError:
            raise NotFound(f"lease {lease_id!r}: not found") from None

    def delete_lease_resource(self, namespace: str, lease_id: str, kind: str, key: str) -> None:
        self._conn.execute(
            "DELETE FROM lease_resources WHERE namespace=? AND lease_id=? AND kind=? AND key=?",
            (namespace, lease_id, kind, key))

    def lease_resources(self, namespace: str | None = None) -> list[tuple[str, str, str, str]]:
        """(namespace, lease id, kind, key) of every leased resource."""
        query = "SELECT namespace, lease_id, kind, key FROM lease_resources"
        if namespace is None:
            return list(self._conn.execute(query))
        return list(self._conn.execute(query + " WHERE namespace=?", (namespace,)))


    # Runtime objects (pod sandboxes, containers): JSON documents with a unique id and name per kind.
    def put_object(self, namespace: str, kind: str, obj_id: str, name: str, doc: Mapping[str, Any]) -> None:
        """Create or replace; a name another object of the kind holds is AlreadyExists."""
        self.ensure_namespace(namespace)
        now = _now()
        try:
            self._conn.execute(
                """INSERT INTO runtime_objects(namespace, kind, id, name, doc, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(namespace, kind, id) DO UPDATE SET doc=excluded.doc, updated_at=excluded.updated_at""",
                (namespace, kind, obj_id, name, json.dumps(doc), now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"{kind} name {name!r} is reserved by another {kind}") from None

    def update_object(self, namespace: str, kind: str, obj_id: str, doc: Mapping[str, Any]) -> bool:
        """Replace an existing object's document; False (and nothing written) if it does not exist."""
        cur = self._conn.execute(
            "UPDATE runtime_objects SET doc=?, updated_at=? WHERE namespace=? AND kind=? AND id=?",
            (json.dumps(doc), _now(), namespace, kind, obj_id))
        return cur.rowcount == 1

    def get_object(self, namespace: str, kind: str, obj_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT doc FROM runtime_objects WHERE namespace=? AND kind=? AND id=?",
                                 (namespace, kind, obj_id)).fetchone()
        if row is None:
            raise NotFound(f"{kind} {obj_id!r}: not found")
        doc: dict[str, Any] = json.loads(row[0])
        return doc

    def list_objects(self, namespace: str, kind: str) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.list_object_texts(namespace, kind)]

    def list_object_texts(self, namespace: str, kind: str) -> list[str]:
        """The documents as stored (JSON), oldest first: a caller that keeps what it parsed from each need not
        parse an unchanged one again."""
        rows = self._conn.execute("SELECT doc FROM runtime_objects WHERE namespace=? AND kind=? ORDER BY created_at",
                                  (namespace, kind))
        return [row[0] for row in rows]

    def object_id_by_name(self, namespace: str, kind: str, name: str) -> str | None:
        row = self._conn.execute("SELECT id FROM runtime_objects WHERE namespace=? AND kind=? AND name=?",
                                 (namespace, kind, name)).fetchone()
        return None if row is None else str(row[0])

    def delete_object(self, namespace: str, kind: str, obj_id: str) -> None:
        self._conn.execute("DELETE FROM runtime_objects WHERE namespace=? AND kind=? AND id=?",
                           (namespace, kind, obj_id))


_IMAGE_COLUMNS = "name, media_type, digest, size, labels, annotations, created_at, updated_at"
_CONTENT_COLUMNS = "digest, size, labels, created_at, updated_at"


def _image(row: tuple[str, str, str, int, str, str, str, str]) -> ImageRecord:
    name, media_type, digest, size, labels, annotations, created, updated = row
    target = Descriptor(media_type, Digest.parse(digest), size, annotations=json.loads(annotations))
    return ImageRecord(name, target, json.loads(labels), _parse_time(created), _parse_time(updated))


def _content(row: tuple[str, int, str, str, str]) -> ContentRecord:
    digest, size, labels, created, updated = row
    return ContentRecord(Digest.parse(digest), size, json.loads(labels), _parse_time(created),
                         _parse_time(updated))


def _labels(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(labels.items())))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


