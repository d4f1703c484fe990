"""containerd's services served in-process over a real gRPC socket, on a fresh store (no root needed).

The comparisons with containerd itself are in tests/integration/test_ctr.py; these pin the edge cases:
field masks, read bounds, error codes, and what each call leaves in the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, field_mask_pb2

from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from cri.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from cri.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from cri.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from cri.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from cri.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from cri.api.containerd.services.version.v1 import version_pb2_grpc
from cri.api.containerd.types import descriptor_pb2
from cri.config import Config
from cri.containerd import PROXY_SNAPSHOTTER
from cri.instrument import Interceptor
from cri.metrics import Metrics
from cri.node import ImageParts, open_containerd_api, open_image_parts
from store.digest import Digest

NS = (("containerd-namespace", "k8s.io"),)
Code = grpc.StatusCode


@dataclass
class Api:
    channel: grpc.Channel
    parts: ImageParts

    def stub(self, module: Any, name: str) -> Any:
        return getattr(module, f"{name}Stub")(self.channel)

    def blob(self, data: bytes, labels: dict[str, str] | None = None) -> str:
        """Put ``data`` in the content store and record it in k8s.io."""
        digest = Digest("sha256", hashlib.sha256(data).hexdigest())
        with self.parts.content.writer(f"test-{digest.hex}", digest, len(data)) as writer:
            writer.write(data)
            writer.commit()
        with self.parts.db.transaction() as tx:
            tx.put_content("k8s.io", digest, len(data), labels or {})
        return str(digest)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = Config(root=tmp_path / "root", state=tmp_path / "state", metrics_address="")
    metrics = Metrics()
    with ExitStack() as stack:
        parts = open_image_parts(config, metrics, stack)
        containerd = open_containerd_api(config, parts, stack)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[Interceptor(metrics)])
        containerd.register(server)
        socket = tmp_path / "api.sock"
        server.add_insecure_port(f"unix://{socket}")
        server.start()
        stack.callback(server.stop, None)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            yield Api(channel, parts)


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    return error.value.code()


def mask(*paths: str) -> Any:
    return field_mask_pb2.FieldMask(paths=list(paths))


# --- content -------------------------------------------------------------------------------------------------


def test_content_info_list_and_read(api: Api) -> None:
    data = b"0123456789" * 200_000  # two read chunks
    digest = api.blob(data, {"a": "1"})
    content = api.stub(content_pb2_grpc, "Content")
    info = content.Info(content_pb2.InfoRequest(digest=digest), metadata=NS).info
    assert (info.digest, info.size, dict(info.labels)) == (digest, len(data), {"a": "1"})
    listed = [i for r in content.List(content_pb2.ListContentRequest(filters=["labels.a==1"]), metadata=NS)
              for i in r.info]
    assert [i.digest for i in listed] == [digest]
    assert not listed[0].HasField("updated_at")  # as containerd's List
    chunks = list(content.Read(content_pb2.ReadContentRequest(digest=digest), metadata=NS))
    assert b"".join(c.data for c in chunks) == data and [c.offset for c in chunks] == [0, 1 << 20]
    part = content.Read(content_pb2.ReadContentRequest(digest=digest, offset=5, size=7), metadata=NS)
    assert b"".join(c.data for c in part) == data[5:12]
    tail = content.Read(content_pb2.ReadContentRequest(digest=digest, offset=len(data) - 3, size=100), metadata=NS)
    assert b"".join(c.data for c in tail) == data[-3:]
    past = content_pb2.ReadContentRequest(digest=digest, offset=len(data) + 1)
    assert code_of(lambda: content.Read(past, metadata=NS)) is Code.OUT_OF_RANGE


def test_content_is_per_namespace_and_needs_one(api: Api) -> None:
    digest = api.blob(b"hello")
    content = api.stub(content_pb2_grpc, "Content")
    other = (("containerd-namespace", "default"),)
    assert code_of(lambda: content.Info(content_pb2.InfoRequest(digest=digest), metadata=other)) is Code.NOT_FOUND
    assert code_of(lambda: content.Info(content_pb2.InfoRequest(digest=digest))) is Code.FAILED_PRECONDITION
    bad = content_pb2.InfoRequest(digest="sha256:nope")
    assert code_of(lambda: content.Info(bad, metadata=NS)) is Code.INVALID_ARGUMENT


def test_content_update_follows_field_masks(api: Api) -> None:
    digest = api.blob(b"labels", {"keep": "1", "drop": "2", "change": "3"})
    content = api.stub(content_pb2_grpc, "Content")
    given = content_pb2.Info(digest=digest, labels={"change": "4", "new": "5", "ignored": "6"})
    request = content_pb2.UpdateRequest(info=given, update_mask=mask("labels.change", "labels.new", "labels.drop"))
    updated = content.Update(request, metadata=NS).info
    assert dict(updated.labels) == {"keep": "1", "change": "4", "new": "5"}
    whole = content.Update(content_pb2.UpdateRequest(info=given), metadata=NS).info
    assert dict(whole.labels) == {"change": "4", "new": "5", "ignored": "6"}
    wrong = content_pb2.UpdateRequest(info=given, update_mask=mask("size"))
    assert code_of(lambda: content.Update(wrong, metadata=NS)) is Code.INVALID_ARGUMENT


def test_content_delete_removes_the_blob_once_unrecorded(api: Api) -> None:
    digest = api.blob(b"doomed")
    content = api.stub(content_pb2_grpc, "Content")
    content.Delete(content_pb2.DeleteContentRequest(digest=digest), metadata=NS)
    assert not api.parts.content.exists(Digest.parse(digest))
    again = content_pb2.DeleteContentRequest(digest=digest)
    assert code_of(lambda: content.Delete(again, metadata=NS)) is Code.NOT_FOUND


def test_ingest_statuses_and_abort(api: Api) -> None:
    store = api.parts.content
    with store.writer("layer-x", Digest("sha256", "0" * 64), 10) as writer:
        writer.write(b"abc")
    content = api.stub(content_pb2_grpc, "Content")
    status = content.Status(content_pb2.StatusRequest(ref="layer-x")).status
    assert (status.ref, status.offset, status.total) == ("layer-x", 3, 10)
    listed = content.ListStatuses(content_pb2.ListStatusesRequest(filters=["ref~=^layer-"])).statuses
    assert [s.ref for s in listed] == ["layer-x"]
    content.Abort(content_pb2.AbortRequest(ref="layer-x"))
    assert code_of(lambda: content.Status(content_pb2.StatusRequest(ref="layer-x"))) is Code.NOT_FOUND


# --- images --------------------------------------------------------------------------------------------------


def _image(name: str, digest: str, labels: dict[str, str] | None = None) -> Any:
    target = descriptor_pb2.Descriptor(media_type="application/vnd.oci.image.manifest.v1+json", digest=digest, size=5)
    return images_pb2.Image(name=name, target=target, labels=labels or {})


def test_images_create_get_list_update_delete(api: Api) -> None:
    digest = api.blob(b"image")
    images = api.stub(images_pb2_grpc, "Images")
    created = images.Create(images_pb2.CreateImageRequest(image=_image("a:1", digest, {"x": "1"})), metadata=NS)
    assert created.image.created_at.seconds > 0
    again = images_pb2.CreateImageRequest(image=_image("a:1", digest))
    assert code_of(lambda: images.Create(again, metadata=NS)) is Code.ALREADY_EXISTS
    images.Create(images_pb2.CreateImageRequest(image=_image("b:1", digest)), metadata=NS)
    listed = images.List(images_pb2.ListImagesRequest(filters=["labels.x==1"]), metadata=NS).images
    assert [i.name for i in listed] == ["a:1"]
    by_digest = images.List(images_pb2.ListImagesRequest(filters=[f"target.digest=={digest}"]), metadata=NS)
    assert [i.name for i in by_digest.images] == ["a:1", "b:1"]
    update = images_pb2.UpdateImageRequest(image=_image("a:1", digest, {"y": "2"}), update_mask=mask("labels.y"))
    assert dict(images.Update(update, metadata=NS).image.labels) == {"x": "1", "y": "2"}
    got = images.Get(images_pb2.GetImageRequest(name="a:1"), metadata=NS).image
    assert got.created_at == created.image.created_at
    images.Delete(images_pb2.DeleteImageRequest(name="a:1", sync=True), metadata=NS)
    assert code_of(lambda: images.Get(images_pb2.GetImageRequest(name="a:1"), metadata=NS)) is Code.NOT_FOUND
    empty = images_pb2.CreateImageRequest(image=_image("", digest))
    assert code_of(lambda: images.Create(empty, metadata=NS)) is Code.INVALID_ARGUMENT


# --- namespaces and leases -----------------------------------------------------------------------------------


def test_namespaces(api: Api) -> None:
    namespaces = api.stub(namespace_pb2_grpc, "Namespaces")
    create = namespace_pb2.CreateNamespaceRequest(namespace=namespace_pb2.Namespace(name="n1", labels={"a": "1"}))
    namespaces.Create(create)
    assert code_of(lambda: namespaces.Create(create)) is Code.ALREADY_EXISTS
    update = namespace_pb2.UpdateNamespaceRequest(namespace=namespace_pb2.Namespace(name="n1", labels={"b": "2"}),
                                                  update_mask=mask("labels.b"))
    assert dict(namespaces.Update(update).namespace.labels) == {"a": "1", "b": "2"}
    assert [n.name for n in namespaces.List(namespace_pb2.ListNamespacesRequest()).namespaces] == ["n1"]
    # As containerd 1.6: a namespace never made reads as one with no labels.
    assert namespaces.Get(namespace_pb2.GetNamespaceRequest(name="nope")).namespace.name == "nope"
    api.blob(b"in k8s.io")
    busy = namespace_pb2.DeleteNamespaceRequest(name="k8s.io")
    assert code_of(lambda: namespaces.Delete(busy)) is Code.FAILED_PRECONDITION
    namespaces.Delete(namespace_pb2.DeleteNamespaceRequest(name="n1"))
    gone = namespace_pb2.DeleteNamespaceRequest(name="n1")
    assert code_of(lambda: namespaces.Delete(gone)) is Code.NOT_FOUND
    bad = namespace_pb2.CreateNamespaceRequest(namespace=namespace_pb2.Namespace(name="bad name"))
    assert code_of(lambda: namespaces.Create(bad)) is Code.INVALID_ARGUMENT


def test_leases_keep_content_until_deleted(api: Api) -> None:
    digest = api.blob(b"leased")
    leases = api.stub(leases_pb2_grpc, "Leases")
    lease = leases.Create(leases_pb2.CreateRequest(labels={"k": "v"}), metadata=NS).lease
    assert lease.id and lease.created_at.seconds > 0
    resource = leases_pb2.Resource(id=digest, type="content")
    leases.AddResource(leases_pb2.AddResourceRequest(id=lease.id, resource=resource), metadata=NS)
    listed = leases.ListResources(leases_pb2.ListResourcesRequest(id=lease.id), metadata=NS).resources
    assert [(r.id, r.type) for r in listed] == [(digest, "content")]
    # Unrecorded but leased: garbage collection keeps the blob.
    with api.parts.db.transaction() as tx:
        tx.delete_content("k8s.io", Digest.parse(digest))
    api.parts.gc.collect()
    assert api.parts.content.exists(Digest.parse(digest))
    leases.Delete(leases_pb2.DeleteRequest(id=lease.id, sync=True), metadata=NS)
    assert not api.parts.content.exists(Digest.parse(digest))
    odd = leases_pb2.AddResourceRequest(id="x", resource=leases_pb2.Resource(id="y", type="images"))
    assert code_of(lambda: leases.AddResource(odd, metadata=NS)) is Code.UNIMPLEMENTED
    missing = leases_pb2.ListResourcesRequest(id="nope")
    assert code_of(lambda: leases.ListResources(missing, metadata=NS)) is Code.NOT_FOUND


# --- snapshots -----------------------------------------------------------------------------------------------


def test_snapshots_lifecycle_on_native(api: Api) -> None:
    snapshots = api.stub(snapshots_pb2_grpc, "Snapshots")
    sn = "native"
    mounts = snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter=sn, key="a", labels={"l": "1"}))
    assert [(m.type, list(m.options)) for m in mounts.mounts] == [("bind", ["rw", "rbind"])]
    snapshots.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter=sn, name="base", key="a"))
    snapshots.View(snapshots_pb2.ViewSnapshotRequest(snapshotter=sn, key="v", parent="base"))
    info = snapshots.Stat(snapshots_pb2.StatSnapshotRequest(snapshotter=sn, key="base")).info
    assert (info.kind, dict(info.labels)) == (snapshots_pb2.COMMITTED, {"l": "1"})
    listed = [i for r in snapshots.List(snapshots_pb2.ListSnapshotsRequest(snapshotter=sn, filters=["kind==view"]))
              for i in r.info]
    assert [(i.name, i.parent, i.kind) for i in listed] == [("v", "base", snapshots_pb2.VIEW)]
    updated = snapshots.Update(snapshots_pb2.UpdateSnapshotRequest(
        snapshotter=sn, info=snapshots_pb2.Info(name="base", labels={"m": "2"}), update_mask=mask("labels.m")))
    assert dict(updated.info.labels) == {"l": "1", "m": "2"}
    assert snapshots.Usage(snapshots_pb2.UsageRequest(snapshotter=sn, key="base")).inodes >= 1
    busy = snapshots_pb2.RemoveSnapshotRequest(snapshotter=sn, key="base")
    assert code_of(lambda: snapshots.Remove(busy)) is Code.FAILED_PRECONDITION
    snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter=sn, key="v"))
    snapshots.Cleanup(snapshots_pb2.CleanupRequest(snapshotter=sn))
    missing = snapshots_pb2.StatSnapshotRequest(snapshotter=sn, key="v")
    assert code_of(lambda: snapshots.Stat(missing)) is Code.NOT_FOUND


def test_snapshotters_by_name(api: Api) -> None:
    snapshots = api.stub(snapshots_pb2_grpc, "Snapshots")
    for name in ("overlayfs", "native", PROXY_SNAPSHOTTER):
        assert list(snapshots.List(snapshots_pb2.ListSnapshotsRequest(snapshotter=name))) == []
    for name in ("", "nope"):
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=name)
        assert code_of(lambda r=request: snapshots.List(r)) is Code.INVALID_ARGUMENT


def test_the_proxy_snapshotter_is_its_own_key_space(api: Api) -> None:
    snapshots = api.stub(snapshots_pb2_grpc, "Snapshots")
    snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter=PROXY_SNAPSHOTTER, key="default/1/x"))
    assert list(snapshots.List(snapshots_pb2.ListSnapshotsRequest(snapshotter="overlayfs"))) == []
    # crishim's own garbage collection never touches what containerd keeps there.
    api.parts.gc.collect()
    stat = snapshots_pb2.StatSnapshotRequest(snapshotter=PROXY_SNAPSHOTTER, key="default/1/x")
    assert snapshots.Stat(stat).info.kind == snapshots_pb2.ACTIVE


# --- introspection and version -------------------------------------------------------------------------------


def test_plugins_and_filters(api: Api) -> None:
    introspection = api.stub(introspection_pb2_grpc, "Introspection")
    plugins = introspection.Plugins(introspection_pb2.PluginsRequest()).plugins
    ids = {(p.type, p.id) for p in plugins}
    assert {("io.containerd.content.v1", "content"), ("io.containerd.grpc.v1", "cri"),
            ("io.containerd.snapshotter.v1", "native")} <= ids
    native = next(p for p in plugins if p.id == "native")
    assert not native.HasField("init_err") and native.platforms[0].os == "linux"
    devmapper = next(p for p in plugins if p.id == "devmapper")
    assert devmapper.init_err.message == "devmapper not configured"
    only = introspection.Plugins(introspection_pb2.PluginsRequest(filters=["type==io.containerd.grpc.v1"])).plugins
    assert {p.type for p in only} == {"io.containerd.grpc.v1"}
    first = introspection.Server(empty_pb2.Empty()).uuid
    assert len(first) == 36 and first == introspection.Server(empty_pb2.Empty()).uuid


def test_version(api: Api) -> None:
    version = api.stub(version_pb2_grpc, "Version")
    assert version.Version(empty_pb2.Empty()).version
