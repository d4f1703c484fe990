"""ImageFsInfo: the filesystems of the snapshotter's image layers and of containers' writable layers.

``image_filesystems`` is the snapshotter's root, where image layers live (kubelet reads entry 0);
``container_filesystems`` the folder of containers' writable layers. Without ``writable_layers_dir`` the two
are one folder, reported alike with everything in it, as CRI-O does; with it, each counts the snapshots it
holds, and kubelet, seeing two mountpoints, collects images and evicts pods on each disk apart (a split image
filesystem, KEP-4191).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from errdefs import NotFound
from snapshotters.snapshotter import Info, Usage

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def image_fs_info(svc: ImageService, request: api_pb2.ImageFsInfoRequest) -> api_pb2.ImageFsInfoResponse:
    sn = svc.snapshotter
    infos: list[Info] = []
    sn.walk(infos.append)
    totals: defaultdict[str, Usage] = defaultdict(Usage)
    for info in infos:
        with contextlib.suppress(NotFound):  # removed while we add up
            usage, folder = sn.usage(info.name), sn.location(info.name)
            total = totals[folder]
            totals[folder] = Usage(total.size + usage.size, total.inodes + usage.inodes)
    now = time.time_ns()
    return api_pb2.ImageFsInfoResponse(
        image_filesystems=[_filesystem(sn.root, totals, now)],
        container_filesystems=[_filesystem(sn.writable_root, totals, now)])


def _filesystem(folder: str, totals: dict[str, Usage], now: int) -> api_pb2.FilesystemUsage:
    usage = totals.get(folder, Usage())
    return api_pb2.FilesystemUsage(
        timestamp=now,
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=folder),
        used_bytes=api_pb2.UInt64Value(value=usage.size),
        inodes_used=api_pb2.UInt64Value(value=usage.inodes),
    )
