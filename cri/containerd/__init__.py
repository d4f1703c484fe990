"""containerd 1.6's gRPC API on crishim's socket, so containerd's ``ctr`` works against crishim.

One module per service, each a thin servicer over crishim's store and
snapshotters that raises ``errdefs`` errors (the daemon's interceptor turns
them into status codes): ``version``, ``namespaces``, ``images``,
``content``, ``snapshots``, ``diff``, ``leases`` and ``introspection``; ``namespace``
reads the namespace a call carries. ``ContainerdAPI`` builds them all from the
CRI image service's store and registers them on the daemon's server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cri.api.containerd.services.content.v1 import content_pb2_grpc
from cri.api.containerd.services.diff.v1 import diff_pb2_grpc
from cri.api.containerd.services.images.v1 import images_pb2_grpc
from cri.api.containerd.services.introspection.v1 import introspection_pb2_grpc
from cri.api.containerd.services.leases.v1 import leases_pb2_grpc
from cri.api.containerd.services.namespaces.v1 import namespace_pb2_grpc
from cri.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from cri.api.containerd.services.version.v1 import version_pb2_grpc
from cri.config import Config
from cri.containerd.content import ContentService
from cri.containerd.diff import DiffService
from cri.containerd.images import ImagesService
from cri.containerd.introspection import IntrospectionService, plugins
from cri.containerd.leases import LeasesService
from cri.containerd.namespaces import NamespacesService
from cri.containerd.snapshots import PROXY_SNAPSHOTTER, SnapshotsService
from cri.containerd.version import VersionService
from snapshotters.plugins import probe_all
from snapshotters.registry import DRIVERS, snapshotter_root
from store.platforms import default_platform

if TYPE_CHECKING:
    from cri.image_service import ImageService

__all__ = ["PROXY_SNAPSHOTTER", "ContainerdAPI"]


class ContainerdAPI:
    """The containerd services of one daemon, sharing the CRI image service's store and snapshotters.

    Owns one snapshotter of its own, ``crishim``, for containerd's proxy
    snapshotter plugin (see ``cri.containerd.snapshots``); ``close`` closes it.
    """

    def __init__(self, config: Config, images: ImageService) -> None:
        driver = config.image.snapshotter
        self._proxy = DRIVERS[driver](snapshotter_root(config.root, PROXY_SNAPSHOTTER)).open()
        probes = probe_all(config.root)
        plugin_list = plugins(config.root, default_platform(), probes, {PROXY_SNAPSHOTTER: probes[driver]})
        gc = images.collect_garbage
        self._servicers: list[tuple[Callable[[Any, Any], None], Any]] = [
            (version_pb2_grpc.add_VersionServicer_to_server, VersionService()),
            (namespace_pb2_grpc.add_NamespacesServicer_to_server, NamespacesService(images.db)),
            (images_pb2_grpc.add_ImagesServicer_to_server, ImagesService(images.db, gc, images.catalog)),
            (content_pb2_grpc.add_ContentServicer_to_server, ContentService(images.content, images.db, gc)),
            (snapshots_pb2_grpc.add_SnapshotsServicer_to_server,
             SnapshotsService({**images.snapshotters, PROXY_SNAPSHOTTER: self._proxy}, images.db)),
            # Only the CRI's snapshotters: a client applies layers onto those, never onto containerd's proxy one.
            (diff_pb2_grpc.add_DiffServicer_to_server, DiffService(images.content, images.db, images.snapshotters)),
            (leases_pb2_grpc.add_LeasesServicer_to_server, LeasesService(images.db, gc)),
            (introspection_pb2_grpc.add_IntrospectionServicer_to_server,
             IntrospectionService(config.root, plugin_list)),
        ]

    def register(self, server: Any) -> None:
        for add_to_server, servicer in self._servicers:
            add_to_server(servicer, server)

    def close(self) -> None:
        self._proxy.close()
