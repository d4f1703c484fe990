"""Garbage collection of the image store: blobs nothing refers to, then snapshots no image needs.

Leases protect the blobs of running pulls and imports. Their snapshots belong to no image until they end,
so no snapshot is pruned while one is in progress (``pulling``): such a collection leaves them to the next.
``schedule`` runs a collection soon on a background thread (after a removal, as containerd's scheduler
does), ``collect`` runs one on the caller's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from cri.image_service.collector import BackgroundCollector
from cri.metrics import Metrics
from snapshotters import Snapshotter
from snapshotters.gc import prune
from store.content import ContentStore
from store.gc import GCResult, collect
from store.metadata import MetadataDB

__all__ = ["GarbageCollector"]


class GarbageCollector:
    def __init__(self, db: MetadataDB, content: ContentStore, snapshotters: Mapping[str, Snapshotter],
                 metrics: Metrics, on_change: Callable[[], None]) -> None:
        self._db = db
        self._content = content
        self._snapshotters = snapshotters
        self._metrics = metrics
        self._on_change = on_change  # after each pull and collection: what measures the store measures again
        self._lock = threading.Lock()
        self._pulls = 0
        self._pruning = False
        self._pulls_changed = threading.Condition()
        self._background = BackgroundCollector(self.collect)

    def close(self) -> None:
        """Wait for the background collection in progress, if any; none starts after."""
        self._background.close()

    @contextmanager
    def pulling(self) -> Iterator[None]:
        """Held for a whole pull: snapshots it unpacks belong to no image until it ends, so none are pruned."""
        with self._pulls_changed:
            while self._pruning:
                self._pulls_changed.wait()
            self._pulls += 1
        try:
            yield
        finally:
            with self._pulls_changed:
                self._pulls -= 1
                self._pulls_changed.notify_all()
            self._on_change()

    def collect(self) -> GCResult:
        """Blobs nothing refers to (leases protect those of running pulls), then snapshots no image needs."""
        with self._lock, self._metrics.gc():
            try:
                result = collect(self._db, self._content)
                pruned = self._prune(result)
            finally:
                self._on_change()
            self._metrics.observe_gc_freed(len(result.removed_blobs), result.removed_bytes, pruned)
            return result

    def schedule(self) -> None:
        """``collect`` soon, on the background thread."""
        self._background.request()

    def _prune(self, result: GCResult) -> dict[str, int]:
        """Snapshots removed, by snapshotter; none while a pull is unpacking (a later collection prunes)."""
        with self._pulls_changed:
            if self._pulls:
                return {}
            self._pruning = True
        try:
            return {name: len(prune(sn, result.live_snapshots.get(name, set())))
                    for name, sn in self._snapshotters.items()}
        finally:
            with self._pulls_changed:
                self._pruning = False
                self._pulls_changed.notify_all()
