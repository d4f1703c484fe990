"""containerd 1.6's gRPC API on crishim's socket, so containerd's ``ctr`` works against crishim.

One module per service, each a thin servicer over crishim's store and
snapshotters that raises ``errdefs`` errors (the daemon's interceptor turns
them into status codes): ``version``, ``namespaces``, ``images``,
``content``, ``snapshots``, ``diff``, ``leases`` and ``introspection``; ``namespace``
reads the namespace a call carries. ``ContainerdAPI`` builds them all over the
parts the daemon built (``cri.node``) and registers them on the daemon's server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri.api.containerd.services.content.v1 import content_pb2_grpc
from cri.api.containerd.services.diff.v1 import diff_pb2_grpc
from cri.api.containerd.services.images.v1 import images_pb2_grpc
from cri.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from cri.api.containerd.services.leases.v1 import leases_pb2_grpc
from cri.api.containerd.services.namespaces.v1 import namespace_pb2_grpc
from cri.api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from cri.api.containerd.services.version.v1 import version_pb2_grpc
from cri.containerd.content import ContentService
from cri.containerd.diff import DiffService
from cri.containerd.images import ImagesService
from cri.containerd.introspection import IntrospectionService
from cri.containerd.leases import LeasesService
from cri.containerd.namespaces import NamespacesService
from cri.containerd.snapshots import PROXY_SNAPSHOTTER, SnapshotsService
from cri.containerd.version import VersionService
from snapshotters import Snapshotter
from store.content import ContentStore
from store.metadata import MetadataDB

if TYPE_CHECKING:
    from cri.image_service.catalog import ImageCatalog

__all__ = ["PROXY_SNAPSHOTTER", "ContainerdAPI"]


class ContainerdAPI:
    """The containerd services of one daemon, over the CRI's store and snapshotters.

    ``proxy`` is the snapshotter of containerd's proxy snapshotter plugin, ``crishim`` (see
    ``cri.containerd.snapshots``); ``plugins`` what the introspection service lists.
    """

    def __init__(self, *, root: Path, db: MetadataDB, content: ContentStore, catalog: ImageCatalog,
                 snapshotters: Mapping[str, Snapshotter], proxy: Snapshotter, collect_garbage: Callable[[], object],
                 plugins: list[introspection_pb2.Plugin]) -> None:
        gc = collect_garbage
        self._servicers: list[tuple[Callable[[Any, Any], None], Any]] = [
            (version_pb2_grpc.add_VersionServicer_to_server, VersionService()),
            (namespace_pb2_grpc.add_NamespacesServicer_to_server, NamespacesService(db)),
            (images_pb2_grpc.add_ImagesServicer_to_server, ImagesService(db, gc, catalog)),
            (content_pb2_grpc.add_ContentServicer_to_server, ContentService(content, db, gc)),
            (snapshots_pb2_grpc.add_SnapshotsServicer_to_server,
             SnapshotsService({**snapshotters, PROXY_SNAPSHOTTER: proxy}, db)),
            # Only the CRI's snapshotters: a client applies layers onto those, never onto containerd's proxy one.
            (diff_pb2_grpc.add_DiffServicer_to_server, DiffService(content, db, snapshotters)),
            (leases_pb2_grpc.add_LeasesServicer_to_server, LeasesService(db, gc)),
            (introspection_pb2_grpc.add_IntrospectionServicer_to_server, IntrospectionService(root, plugins)),
        ]

    def register(self, server: Any) -> None:
        for add_to_server, servicer in self._servicers:
            add_to_server(servicer, server)
