"""containerd.services.namespaces.v1 over the metadata database (``ctr namespaces ...``).

As in containerd 1.6: Get of a namespace never created answers it with no
labels; Update creates the namespace it names; Delete refuses a namespace
that still holds images, blobs or leases. Snapshots are not kept per
namespace in crishim (see ``snapshots``), so they never hold one back.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from cri.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from cri.containerd.convert import updated_labels, validate_labels
from cri.containerd.namespace import validate_identifier
from errdefs import NotFound
from store.metadata import MetadataDB, Tx

__all__ = ["NamespacesService"]


class NamespacesService(namespace_pb2_grpc.NamespacesServicer):
    def __init__(self, db: MetadataDB) -> None:
        self._db = db

    def Get(self, request: Any, context: Any) -> namespace_pb2.GetNamespaceResponse:
        with self._db.read() as tx:
            return namespace_pb2.GetNamespaceResponse(namespace=_namespace(tx, request.name))

    def List(self, request: Any, context: Any) -> namespace_pb2.ListNamespacesResponse:
        # containerd 1.6 ignores the request's filter too.
        with self._db.read() as tx:
            return namespace_pb2.ListNamespacesResponse(namespaces=[_namespace(tx, n) for n in tx.namespaces()])

    def Create(self, request: Any, context: Any) -> namespace_pb2.CreateNamespaceResponse:
        name, labels = request.namespace.name, dict(request.namespace.labels)
        validate_identifier(name, "namespace")
        validate_labels(labels, "namespace")
        with self._db.transaction() as tx:
            tx.create_namespace(name, {k: v for k, v in labels.items() if v})
            return namespace_pb2.CreateNamespaceResponse(namespace=_namespace(tx, name))

    def Update(self, request: Any, context: Any) -> namespace_pb2.UpdateNamespaceResponse:
        name = request.namespace.name
        validate_identifier(name, "namespace")
        with self._db.transaction() as tx:
            tx.ensure_namespace(name)
            labels = updated_labels(tx.namespace_labels(name), dict(request.namespace.labels),
                                    request.update_mask.paths, f"namespace {name!r}")
            tx.set_namespace_labels(name, labels)
            return namespace_pb2.UpdateNamespaceResponse(namespace=_namespace(tx, name))

    def Delete(self, request: Any, context: Any) -> empty_pb2.Empty:
        with self._db.transaction() as tx:
            tx.delete_namespace(request.name)
        return empty_pb2.Empty()


def _namespace(tx: Tx, name: str) -> namespace_pb2.Namespace:
    try:
        labels = tx.namespace_labels(name)
    except NotFound:
        labels = {}
    return namespace_pb2.Namespace(name=name, labels=labels)
