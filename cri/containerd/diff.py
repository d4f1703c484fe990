"""containerd.services.diff.v1: applying a layer blob onto a snapshot a client prepared (``ctr images import``).

containerd's Go client unpacks on its own side: it prepares an Active snapshot through the snapshots
service, asks Diff.Apply to extract the layer onto the mounts it got back, checks the returned diff ID and
commits. crishim applies only onto mounts one of its own snapshotters gave out for an Active snapshot, found
by comparing the mounts: a client cannot make it write anywhere else on the host. The layer is
decompressed while its diff ID is hashed and applied with the snapshotter's own whiteout handling, as the
CRI's unpacker does.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from cri.api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from cri.api.containerd.types import descriptor_pb2
from cri.containerd.content import digest_argument
from cri.containerd.namespace import required_namespace
from errdefs import InvalidArgument, Unimplemented
from snapshotters.apply import apply_tar
from snapshotters.compression import HashingReader, decompressed
from snapshotters.layer_errors import layer_errors
from snapshotters.snapshotter import Info, Kind, Snapshotter
from store import mediatypes
from store.content import ContentStore
from store.digest import Digest
from store.metadata import MetadataDB

__all__ = ["DiffService"]

APPLIED_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


class DiffService(diff_pb2_grpc.DiffServicer):
    def __init__(self, content: ContentStore, db: MetadataDB, snapshotters: Mapping[str, Snapshotter]) -> None:
        self._content = content
        self._db = db
        self._snapshotters = snapshotters

    def Apply(self, request: Any, context: Any) -> diff_pb2.ApplyResponse:
        namespace = required_namespace(context)
        if request.payloads:
            raise Unimplemented("stream processors are not supported")
        compression = mediatypes.layer_compression(request.diff.media_type)
        if compression is None:
            raise Unimplemented(f"unsupported diff media type: {request.diff.media_type}")
        digest = digest_argument(request.diff.digest)
        self._db.get_content(namespace, digest)  # NotFound unless the namespace holds the blob
        sn, key = self._active_snapshot([(m.type, m.source, tuple(m.options)) for m in request.mounts])
        with layer_errors(str(digest), request.diff.media_type):
            diff_id, size = self._apply(digest, compression, sn, key)
        return diff_pb2.ApplyResponse(applied=descriptor_pb2.Descriptor(
            media_type=APPLIED_MEDIA_TYPE, digest=diff_id, size=size))

    def Diff(self, request: Any, context: Any) -> diff_pb2.DiffResponse:
        raise Unimplemented("computing a diff between mounts is not supported")

    def _active_snapshot(self, mounts: list[tuple[str, str, tuple[str, ...]]]) -> tuple[Snapshotter, str]:
        if not mounts:
            raise InvalidArgument("no mounts to apply the layer onto")
        for sn in self._snapshotters.values():
            infos: list[Info] = []
            sn.walk(infos.append)
            for info in (i for i in infos if i.kind == Kind.ACTIVE):
                if [(m.type, m.source, m.options) for m in sn.mounts(info.name)] == mounts:
                    return sn, info.name
        raise InvalidArgument("the mounts are not those of an active snapshot of this daemon")

    def _apply(self, digest: Digest, compression: str, sn: Snapshotter, key: str) -> tuple[str, int]:
        target, lowers = Path(sn.apply_dir(key)), [Path(p) for p in sn.lower_dirs(key)]
        with self._content.reader(digest) as blob:
            reader = HashingReader(decompressed(blob, compression))
            # A bottom layer has nothing below to hide: deletions are plain, as containerd applies it.
            apply_tar(cast(BinaryIO, io.BufferedReader(reader, 1 << 20)), target,
                      sn.whiteouts if lowers else "delete", lowers)
            reader.drain()
        return reader.digest, reader.count
