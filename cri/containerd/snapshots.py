"""containerd.services.snapshots.v1: every snapshotter crishim runs, by name (``ctr snapshots ...``).

Each request names its snapshotter (``overlayfs``, ``native``...); an empty
name or one crishim does not run is InvalidArgument, as containerd 1.6
answers ("snapshotter not loaded").

Keys are stored exactly as the client gives them: one key space per
snapshotter, not one per namespace. containerd's own snapshot service
namespaces keys in its metadata layer; crishim does not, and that choice
serves both kinds of client:

- ``ctr -n k8s.io snapshots ls`` shows the layers the CRI unpacked, keyed by
  their chain IDs, with parents and kinds as containerd shows them;
- containerd 1.6 can use crishim as a proxy snapshotter. containerd then
  sends keys it has already namespaced itself (``default/12/sha256:...``)
  and names every request after its proxy plugin, so crishim serves
  ``[proxy_plugins.crishim]`` from a snapshotter of its own, ``crishim``
  (the configured driver, in ``io.containerd.snapshotter.v1.crishim``).
  It must not share a key space with the CRI's: containerd's garbage
  collector removes every snapshot its database does not know, and
  crishim's removes committed snapshots no crishim image needs.

The namespace a call carries is therefore not required, except with a
lease: a snapshot prepared or committed in the call's lease (what ctr does
while it unpacks an import) is kept by garbage collection until the lease
ends, as in containerd, and leases belong to a namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from google.protobuf import empty_pb2

from cri.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from cri.api.containerd.types import mount_pb2
from cri.containerd.convert import timestamp
from cri.containerd.namespace import lease_from, required_namespace
from errdefs import InvalidArgument, Unimplemented
from snapshotters.snapshotter import Info, Kind, Mount, Snapshotter
from store.gc import LEASE_SNAPSHOTS
from store.metadata import MetadataDB

__all__ = ["PROXY_SNAPSHOTTER", "Cleaner", "SnapshotsService"]

# The name containerd's [proxy_plugins.crishim] puts in every request.
PROXY_SNAPSHOTTER = "crishim"
# As containerd: list results go out in blocks of 100.
LIST_BLOCK = 100


@runtime_checkable
class Cleaner(Protocol):
    """A snapshotter that can sweep what crashes left behind (containerd's snapshots.Cleaner)."""

    def cleanup(self) -> None: ...


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, snapshotters: Mapping[str, Snapshotter], db: MetadataDB) -> None:
        self._snapshotters = snapshotters
        self._db = db

    def Prepare(self, request: Any, context: Any) -> snapshots_pb2.PrepareSnapshotResponse:
        sn = self._get(request.snapshotter)
        self._lease(context, request.snapshotter, request.key)
        mounts = sn.prepare(request.key, request.parent, dict(request.labels))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=_mounts(mounts))

    def View(self, request: Any, context: Any) -> snapshots_pb2.ViewSnapshotResponse:
        sn = self._get(request.snapshotter)
        self._lease(context, request.snapshotter, request.key)
        mounts = sn.view(request.key, request.parent, dict(request.labels))
        return snapshots_pb2.ViewSnapshotResponse(mounts=_mounts(mounts))

    def Mounts(self, request: Any, context: Any) -> snapshots_pb2.MountsResponse:
        return snapshots_pb2.MountsResponse(mounts=_mounts(self._get(request.snapshotter).mounts(request.key)))

    def Commit(self, request: Any, context: Any) -> empty_pb2.Empty:
        # containerd passes labels on only when the request has some; otherwise the active's are kept.
        labels = dict(request.labels) or None
        sn = self._get(request.snapshotter)
        # The committed layer is referenced by nothing else until the client labels its image.
        self._lease(context, request.snapshotter, request.name)
        sn.commit(request.name, request.key, labels)
        return empty_pb2.Empty()

    def Remove(self, request: Any, context: Any) -> empty_pb2.Empty:
        self._get(request.snapshotter).remove(request.key)
        return empty_pb2.Empty()

    def Stat(self, request: Any, context: Any) -> snapshots_pb2.StatSnapshotResponse:
        return snapshots_pb2.StatSnapshotResponse(info=_info(self._get(request.snapshotter).stat(request.key)))

    def Update(self, request: Any, context: Any) -> snapshots_pb2.UpdateSnapshotResponse:
        sn = self._get(request.snapshotter)
        given = Info(_kind(request.info.kind), request.info.name, request.info.parent, dict(request.info.labels))
        return snapshots_pb2.UpdateSnapshotResponse(info=_info(sn.update(given, list(request.update_mask.paths))))

    def List(self, request: Any, context: Any) -> Iterator[snapshots_pb2.ListSnapshotsResponse]:
        infos: list[Info] = []
        self._get(request.snapshotter).walk(infos.append, list(request.filters))
        for start in range(0, len(infos), LIST_BLOCK):
            yield snapshots_pb2.ListSnapshotsResponse(info=[_info(i) for i in infos[start:start + LIST_BLOCK]])

    def Usage(self, request: Any, context: Any) -> snapshots_pb2.UsageResponse:
        usage = self._get(request.snapshotter).usage(request.key)
        return snapshots_pb2.UsageResponse(size=usage.size, inodes=usage.inodes)

    def Cleanup(self, request: Any, context: Any) -> empty_pb2.Empty:
        sn = self._get(request.snapshotter)
        if not isinstance(sn, Cleaner):
            raise Unimplemented("snapshotter does not implement Cleanup method")
        sn.cleanup()
        return empty_pb2.Empty()

    def _lease(self, context: Any, snapshotter: str, key: str) -> None:
        """Add the snapshot to the call's lease, if it has one, before the snapshot exists: an unknown lease
        then fails the call without leaving a snapshot behind."""
        lease = lease_from(context)
        if lease:
            with self._db.transaction() as tx:
                tx.add_lease_resource(required_namespace(context), lease, f"{LEASE_SNAPSHOTS}{snapshotter}", key)

    def _get(self, name: str) -> Snapshotter:
        if not name:
            raise InvalidArgument("snapshotter argument missing")
        sn = self._snapshotters.get(name)
        if sn is None:
            raise InvalidArgument(f"snapshotter not loaded: {name}")
        return sn


def _kind(kind: int) -> Kind:
    # containerd's toKind and fromKind: anything but view and active is committed.
    if kind == Kind.VIEW:
        return Kind.VIEW
    if kind == Kind.ACTIVE:
        return Kind.ACTIVE
    return Kind.COMMITTED


def _info(info: Info) -> snapshots_pb2.Info:
    return snapshots_pb2.Info(
        name=info.name, parent=info.parent, kind=_kind(info.kind).name, labels=info.labels,
        created_at=timestamp(info.created_at), updated_at=timestamp(info.updated_at),
    )


def _mounts(mounts: list[Mount]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]
