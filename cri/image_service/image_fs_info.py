"""ImageFsInfo: the filesystem holding image data, as kubelet's image GC reads it (entry 0)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def image_fs_info(svc: ImageService, request: api_pb2.ImageFsInfoRequest) -> api_pb2.ImageFsInfoResponse:
    used, inodes = svc.content.usage()
    usage = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=str(svc.content.root)),
        used_bytes=api_pb2.UInt64Value(value=used),
        inodes_used=api_pb2.UInt64Value(value=inodes),
    )
    return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])
