"""The CRI ImageService: one module per RPC, over the image parts the daemon built (``cri.node``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.config import RegistryAuth
from cri.image_service.catalog import ImageCatalog
from cri.image_service.garbage import GarbageCollector
from cri.image_service.image_fs_info import image_fs_info
from cri.image_service.image_status import image_status
from cri.image_service.list_images import list_images, stream_images
from cri.image_service.pull_image import pull_image, pull_key
from cri.image_service.pull_pool import PullPool
from cri.image_service.remove_image import remove_image
from cri.image_service.unpack import Unpacker
from cri.metrics import Metrics
from cri.snapshot_usage import SnapshotUsage
from snapshotters import Snapshotter
from store.cancel import Cancellation
from store.importer import Importer
from store.metadata import MetadataDB
from store.pull import Puller

__all__ = ["ImageService"]


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, *, db: MetadataDB, catalog: ImageCatalog, snapshotter: Snapshotter,
                 snapshot_usage: SnapshotUsage, puller: Puller, unpacker: Unpacker, importer: Importer,
                 gc: GarbageCollector, pulls: PullPool, auths: Mapping[str, RegistryAuth], metrics: Metrics) -> None:
        self.db = db
        self.catalog = catalog
        self.snapshotter = snapshotter
        self.snapshot_usage = snapshot_usage
        self.puller = puller
        self.unpacker = unpacker
        self.importer = importer
        self.gc = gc
        self._pulls = pulls
        # Credentials configured per registry host, for pulls whose caller sends none.
        self.auths = auths
        self.metrics = metrics

    def PullImage(self, request: Any, context: Any) -> api_pb2.PullImageResponse:
        cancel = Cancellation()
        if context is not None:
            # Runs when the RPC ends for any reason: cancelled, past its deadline, or answered.
            context.add_callback(lambda: cancel.cancel("the PullImage call was cancelled or timed out"))
        return self._pulls.run(lambda token: pull_image(self, request, token), cancel, pull_key(self, request))

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
