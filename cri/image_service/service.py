"""The CRI ImageService: one module per RPC, sharing the store held here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.config import Config
from cri.constants import CRI_NAMESPACE
from cri.image_service.catalog import ImageCatalog
from cri.image_service.collector import BackgroundCollector
from cri.image_service.image_fs_info import image_fs_info
from cri.image_service.image_status import image_status
from cri.image_service.list_images import list_images, stream_images
from cri.image_service.pull_image import pull_image, pull_key
from cri.image_service.pull_pool import PullPool
from cri.image_service.remove_image import remove_image
from cri.image_service.unpack import Unpacker
from cri.image_service.unpack_journal import UnpackJournal
from cri.metrics import Metrics
from cri.scrape_metrics import DiskUsage
from errdefs import InvalidArgument
from snapshotters import Snapshotter
from snapshotters.gc import prune
from snapshotters.registry import snapshotters_under
from store.cancel import Cancellation
from store.content import ContentStore
from store.gc import GCResult, collect
from store.importer import Importer
from store.metadata import MetadataDB
from store.platforms import Platform, default_platform
from store.pull import Puller
from store.remote import HostsConfig

__all__ = ["ImageService"]

CONTENT_DIR = "io.containerd.content.v1.content"
METADATA_DB = "io.containerd.metadata.v1.sqlite/meta.db"
# Layers committed before they were known to be on disk (cri.image_service.unpack_journal).
UNPACK_JOURNAL_DIR = "unpack-journal"
# Pulls downloading and unpacking at once, and pulls queued behind them; beyond both, ResourceExhausted.
# Together they stay well below the daemon's RPC threads (128), so other calls always find one.
_PULLS_RUNNING = 8
_PULLS_WAITING = 56


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, config: Config, metrics: Metrics, platform: Platform) -> None:
        self.config = config
        self.metrics = metrics
        self.content = ContentStore(config.root / CONTENT_DIR).open()
        self.db = MetadataDB(config.root / METADATA_DB).open()
        self.catalog = ImageCatalog(self.db, self.content, CRI_NAMESPACE, platform)
        self.snapshotters = {name: sn.open()
                             for name, sn in snapshotters_under(config.root, config.writable_layers).items()}
        self.snapshotter_name = config.image.snapshotter
        if self.snapshotter_name not in self.snapshotters:
            raise InvalidArgument(f"config: image.snapshotter {self.snapshotter_name!r} is not one of "
                                  f"{', '.join(sorted(self.snapshotters))}")
        self.unpacker = Unpacker(self.content, self.snapshotter, self.snapshotter_name,
                                 UnpackJournal(config.root / UNPACK_JOURNAL_DIR / self.snapshotter_name),
                                 on_layer_unpacked=metrics.layer_unpack_duration.observe)
        self.unpacker.remove_leftovers()
        self.unpacker.recover()
        self.puller = Puller(
            self.content, self.db, HostsConfig(config.registry.config_path), platform=platform,
            max_concurrent_downloads=config.image.max_concurrent_downloads,
            progress_timeout=config.image.pull_progress_timeout or None,
            on_bytes=metrics.add_pull_bytes, on_layer_fetched=metrics.layer_download_duration.observe,
        )
        self.importer = Importer(self.content, self.db, platform)
        self._gc_lock = threading.Lock()
        self._pulls = 0
        self._pruning = False
        self._pulls_changed = threading.Condition()
        self._collector = BackgroundCollector(self.collect_garbage)
        self.disk_usage = DiskUsage(config.root, self.content.usage, self.snapshotters)
        self._pull_pool = PullPool(_PULLS_RUNNING, _PULLS_WAITING)

    @classmethod
    def from_config(cls, config: Config, metrics: Metrics) -> ImageService:
        return cls(config, metrics, default_platform())

    @property
    def snapshotter(self) -> Snapshotter:
        return self.snapshotters[self.snapshotter_name]

    def close(self) -> None:
        self._pull_pool.close()
        self._collector.close()
        self.unpacker.close()
        for sn in self.snapshotters.values():
            sn.close()
        self.db.close()

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
            self.disk_usage.invalidate()

    def collect_garbage(self) -> GCResult:
        """Blobs nothing refers to (leases protect those of running pulls), then snapshots no image needs."""
        with self._gc_lock, self.metrics.gc():
            try:
                result = collect(self.db, self.content)
                pruned = self._prune(result)
            finally:
                self.disk_usage.invalidate()
            self.metrics.observe_gc_freed(len(result.removed_blobs), result.removed_bytes, pruned)
            return result

    def _prune(self, result: GCResult) -> dict[str, int]:
        """Snapshots removed, by snapshotter; none while a pull is unpacking (a later collection prunes)."""
        with self._pulls_changed:
            if self._pulls:
                return {}
            self._pruning = True
        try:
            return {name: len(prune(sn, result.live_snapshots.get(name, set())))
                    for name, sn in self.snapshotters.items()}
        finally:
            with self._pulls_changed:
                self._pruning = False
                self._pulls_changed.notify_all()

    def schedule_garbage_collection(self) -> None:
        """``collect_garbage`` soon, on the collector's thread."""
        self._collector.request()

    def PullImage(self, request: Any, context: Any) -> api_pb2.PullImageResponse:
        cancel = Cancellation()
        if context is not None:
            # Runs when the RPC ends for any reason: cancelled, past its deadline, or answered.
            context.add_callback(lambda: cancel.cancel("the PullImage call was cancelled or timed out"))
        return self._pull_pool.run(lambda token: pull_image(self, request, token), cancel, pull_key(self, request))

    def ListImages(self, request: Any, context: Any) -> api_pb2.ListImagesResponse:
        return list_images(self, request)

    def StreamImages(self, request: Any, context: Any) -> Iterator[api_pb2.StreamImagesResponse]:
        return stream_images(self, request, context)

    def ImageStatus(self, request: Any, context: Any) -> api_pb2.ImageStatusResponse:
        return image_status(self, request)

    def RemoveImage(self, request: Any, context: Any) -> api_pb2.RemoveImageResponse:
        return remove_image(self, request)

    def ImageFsInfo(self, request: Any, context: Any) -> api_pb2.ImageFsInfoResponse:
        return image_fs_info(self, request)
