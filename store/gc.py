"""Garbage collection driven by containerd's reference labels.

Roots are image targets, leased resources and content labelled
``containerd.io/gc.root``. From them the collector follows
``containerd.io/gc.ref.content.*`` labels to more content in the same namespace
and records ``containerd.io/gc.ref.snapshot.<snapshotter>`` references, so a
snapshotter can drop what nothing needs. Content records nothing reaches are
deleted, then blobs no namespace records any more.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from errdefs import InvalidArgument, NotFound
from store.content import BlobInfo, ContentStore
from store.digest import Digest
from store.metadata import MetadataDB, Tx

__all__ = ["GCResult", "collect"]

LABEL_ROOT = "containerd.io/gc.root"
LABEL_CONTENT_REF = "containerd.io/gc.ref.content."
LABEL_SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
LEASE_CONTENT = "content"
# A leased snapshot's resource kind is this prefix and its snapshotter's name, as containerd's.
LEASE_SNAPSHOTS = "snapshots/"
LABEL_EXPIRE = "containerd.io/gc.expire"
INGEST_TTL = timedelta(hours=24)

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class GCResult:
    removed_blobs: list[Digest] = field(default_factory=list)
    removed_bytes: int = 0
    # snapshotter → keys something still refers to, for the snapshotters to keep.
    live_snapshots: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def collect(db: MetadataDB, content: ContentStore) -> GCResult:
    result = GCResult()
    with db.transaction() as tx:
        for namespace in tx.namespaces():
            _drop_expired_leases(tx, namespace)
            _sweep_namespace(tx, namespace, result)
    # Files go only after the records that named them are committed away, so a kill -9 at any point
    # leaves at worst a blob nothing records (the next collection takes it), never a record without its
    # blob. This second transaction writes nothing: it holds the writer lock so that no pull records or
    # leases a blob between the check and the unlink.
    with db.transaction() as tx:
        recorded = tx.content_digests()
        leased = {Digest.parse(key) for _, _, kind, key in tx.lease_resources() if kind == LEASE_CONTENT}
        for info in list(content.walk()):
            if info.digest not in recorded and info.digest not in leased:
                _remove_blob(content, info, result)
    _drop_stale_ingests(content)
    if result.removed_blobs:
        log.info("gc", removed_blobs=len(result.removed_blobs))
    return result


def _drop_stale_ingests(content: ContentStore) -> None:
    """A download nobody resumed for as long as a pull's lease lasts is abandoned."""
    cutoff = datetime.now(UTC) - INGEST_TTL
    for status in content.ingests():
        if status.updated_at < cutoff:
            with contextlib.suppress(NotFound):
                content.abort(status.ref)
            log.info("gc.ingest_dropped", ref=status.ref)


def _drop_expired_leases(tx: Tx, namespace: str) -> None:
    """A lease outlives the pull that made it only if that pull died (kill -9): it expires, as in containerd."""
    now = datetime.now(UTC)
    for lease in tx.list_leases(namespace):
        expire = lease.labels.get(LABEL_EXPIRE)
        try:
            expired = expire is not None and datetime.fromisoformat(expire) <= now
        except ValueError:
            expired = False
        if expired:
            tx.delete_lease(namespace, lease.id)
            log.info("gc.lease_expired", namespace=namespace, lease=lease.id)


def _sweep_namespace(tx: Tx, namespace: str, result: GCResult) -> None:
    records = {rec.digest: rec for rec in tx.list_content(namespace)}
    pending = [target.digest for target in (img.target for img in tx.list_images(namespace))]
    leased = tx.lease_resources(namespace)
    pending += [Digest.parse(key) for _, _, kind, key in leased if kind == LEASE_CONTENT]
    for _, _, kind, key in leased:
        if kind.startswith(LEASE_SNAPSHOTS):
            result.live_snapshots[kind.removeprefix(LEASE_SNAPSHOTS)].add(key)
    pending += [d for d, rec in records.items() if LABEL_ROOT in rec.labels]
    marked: set[Digest] = set()
    while pending:
        digest = pending.pop()
        if digest in marked:
            continue
        marked.add(digest)
        record = records.get(digest)
        if record is not None:
            pending.extend(_follow(record.labels, namespace, result))
    for digest in records.keys() - marked:
        tx.delete_content(namespace, digest)


def _follow(labels: dict[str, str], namespace: str, result: GCResult) -> list[Digest]:
    refs = []
    for key, value in labels.items():
        if key.startswith(LABEL_CONTENT_REF):
            try:
                refs.append(Digest.parse(value))
            except InvalidArgument:
                log.warning("gc.bad_reference", namespace=namespace, label=key, value=value)
        elif key.startswith(LABEL_SNAPSHOT_REF):
            result.live_snapshots[key.removeprefix(LABEL_SNAPSHOT_REF)].add(value)
    return refs


def _remove_blob(content: ContentStore, blob: BlobInfo, result: GCResult) -> None:
    try:
        content.delete(blob.digest)
    except NotFound:
        return
    result.removed_blobs.append(blob.digest)
    result.removed_bytes += blob.size
