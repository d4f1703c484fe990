"""ImageFsInfo: the snapshotter's filesystem, where image layers live (kubelet reads entry 0)."""

from __future__ import annotations

import contextlib
import time
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
    usages = []
    for info in infos:
        with contextlib.suppress(NotFound):  # removed while we add up
            usages.append(sn.usage(info.name))
    total = Usage(sum(u.size for u in usages), sum(u.inodes for u in usages))
    usage = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=sn.root),
        used_bytes=api_pb2.UInt64Value(value=total.size),
        inodes_used=api_pb2.UInt64Value(value=total.inodes),
    )
    return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])
