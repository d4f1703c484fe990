"""ImageFsInfo: the filesystems of the snapshotter's image layers and of containers' writable layers.

``image_filesystems`` is the snapshotter's root, where image layers live (kubelet reads entry 0);
``container_filesystems`` the folder of containers' writable layers. Without ``writable_layers_dir`` the two
are one folder, reported alike with everything in it, as CRI-O does; with it, each counts the snapshots it
holds, and kubelet, seeing two mountpoints, collects images and evicts pods on each disk apart (a split image
filesystem, KEP-4191).

The usage is the last measurement (``cri.snapshot_usage``), as containerd answers from its snapshot store:
walking every writable layer on each call costs a node of a thousand containers a tenth of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.snapshot_usage import FolderUsage

if TYPE_CHECKING:
    from cri.image_service.service import ImageService


def image_fs_info(svc: ImageService, request: api_pb2.ImageFsInfoRequest) -> api_pb2.ImageFsInfoResponse:
    sn = svc.snapshotter
    folders = svc.snapshot_usage.by_folder()
    return api_pb2.ImageFsInfoResponse(
        image_filesystems=[_filesystem(sn.root, folders)],
        container_filesystems=[_filesystem(sn.writable_root, folders)])


def _filesystem(folder: str, folders: Mapping[str, FolderUsage]) -> api_pb2.FilesystemUsage:
    measured = folders[folder]
    return api_pb2.FilesystemUsage(
        timestamp=measured.timestamp,
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=folder),
        used_bytes=api_pb2.UInt64Value(value=measured.usage.size),
        inodes_used=api_pb2.UInt64Value(value=measured.usage.inodes),
    )
