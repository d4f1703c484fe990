"""containerd.services.leases.v1 over the metadata database (``ctr leases ...``).

A lease keeps the resources added to it from garbage collection until it is
deleted. Resource types are containerd's: ``content`` (a digest),
``ingests`` and ``snapshots/<snapshotter>``; crishim's collector honours
content leases. Delete runs garbage collection before it answers, with or
without ``sync``.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import empty_pb2

from cri.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from cri.containerd.convert import timestamp, validate_labels
from cri.containerd.namespace import required_namespace
from errdefs import InvalidArgument, NotFound, Unimplemented
from snapshotters.filters import matches_fields
from store.digest import Digest
from store.metadata import Lease, MetadataDB, Tx

__all__ = ["LeasesService"]


class LeasesService(leases_pb2_grpc.LeasesServicer):
    def __init__(self, db: MetadataDB, collect_garbage: Callable[[], object]) -> None:
        self._db = db
        self._collect_garbage = collect_garbage

    def Create(self, request: Any, context: Any) -> leases_pb2.CreateResponse:
        namespace = required_namespace(context)
        labels = dict(request.labels)
        validate_labels(labels, "lease")
        lease_id = request.id or _random_id()
        with self._db.transaction() as tx:
            tx.create_lease(namespace, Lease(lease_id, labels))
            return leases_pb2.CreateResponse(lease=_lease(_get(tx, namespace, lease_id)))

    def Delete(self, request: Any, context: Any) -> empty_pb2.Empty:
        namespace = required_namespace(context)
        with self._db.transaction() as tx:
            tx.delete_lease(namespace, request.id)
        self._collect_garbage()
        return empty_pb2.Empty()

    def List(self, request: Any, context: Any) -> leases_pb2.ListResponse:
        namespace = required_namespace(context)
        filters = list(request.filters)
        with self._db.read() as tx:
            found = [lease for lease in tx.list_leases(namespace) if matches_fields(_fields(lease), filters)]
        return leases_pb2.ListResponse(leases=[_lease(lease) for lease in found])

    def AddResource(self, request: Any, context: Any) -> empty_pb2.Empty:
        namespace = required_namespace(context)
        kind, key = _resource(request.resource)
        with self._db.transaction() as tx:
            _get(tx, namespace, request.id)
            tx.add_lease_resource(namespace, request.id, kind, key)
        return empty_pb2.Empty()

    def DeleteResource(self, request: Any, context: Any) -> empty_pb2.Empty:
        namespace = required_namespace(context)
        kind, key = _resource(request.resource)
        with self._db.transaction() as tx:
            _get(tx, namespace, request.id)
            tx.delete_lease_resource(namespace, request.id, kind, key)
        return empty_pb2.Empty()

    def ListResources(self, request: Any, context: Any) -> leases_pb2.ListResourcesResponse:
        namespace = required_namespace(context)
        with self._db.read() as tx:
            _get(tx, namespace, request.id)
            held = [(kind, key) for _, lease_id, kind, key in tx.lease_resources(namespace) if lease_id == request.id]
        return leases_pb2.ListResourcesResponse(
            resources=[leases_pb2.Resource(id=key, type=kind) for kind, key in sorted(held)])


def _get(tx: Tx, namespace: str, lease_id: str) -> Lease:
    for lease in tx.list_leases(namespace):
        if lease.id == lease_id:
            return lease
    raise NotFound(f"lease {lease_id!r}: not found")


def _resource(resource: leases_pb2.Resource) -> tuple[str, str]:
    """The (type, id) to store, checked as containerd checks them."""
    kind, key = resource.type, resource.id
    parts = kind.split("/")
    if parts[0] in ("content", "ingests"):
        if len(parts) != 1:
            raise InvalidArgument(f"invalid resource type {kind}")
        if parts[0] == "content":
            try:
                key = str(Digest.parse(key))
            except InvalidArgument:
                raise InvalidArgument(f"invalid content resource id {key}") from None
    elif parts[0] == "snapshots":
        if len(parts) != 2:
            raise InvalidArgument(f"invalid snapshot resource type {kind}")
    else:
        raise Unimplemented(f"resource type {kind} not supported yet")
    return kind, key


def _random_id() -> str:
    # The shape of containerd's leases.WithRandomID: nanoseconds, a dash, 3 random bytes in base64.
    return f"{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(secrets.token_bytes(3)).decode()}"


def _lease(lease: Lease) -> leases_pb2.Lease:
    return leases_pb2.Lease(id=lease.id, labels=lease.labels, created_at=timestamp(lease.created_at))


def _fields(lease: Lease) -> dict[str, object]:
    fields: dict[str, object] = {"id": lease.id}
    if lease.labels:
        fields["labels"] = lease.labels
    return fields
