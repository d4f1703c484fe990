from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from errdefs import AlreadyExists, NotFound
from store.descriptor import Descriptor
from store.digest import sha256_of
from store.metadata import ImageRecord, Lease, MetadataDB

NS = "k8s.io"
TARGET = Descriptor("application/vnd.oci.image.manifest.v1+json", sha256_of(b"m"), 1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetadataDB]:
    db = MetadataDB(tmp_path / "meta.db").open()
    yield db
    db.close()


def test_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "meta.db").open()
    version = db.schema_version
    assert version >= 1
    db.close()
    with closing(MetadataDB(tmp_path / "meta.db").open()) as again:
        assert again.schema_version == version


def test_image_update_keeps_created_at(db: MetadataDB) -> None:
    with db.transaction() as tx:
        first = tx.put_image(NS, ImageRecord("a:1", TARGET, {"k": "v"}))
    other = Descriptor(TARGET.media_type, sha256_of(b"n"), 2)
    with db.transaction() as tx:
        second = tx.put_image(NS, ImageRecord("a:1", other, {}))
    assert second.created_at == first.created_at
    assert second.target == other
    assert db.get_image(NS, "a:1").labels == {}


def test_namespaces_are_separate(db: MetadataDB) -> None:
    with db.transaction() as tx:
        tx.put_image(NS, ImageRecord("a:1", TARGET))
    assert db.list_images("default") == []
    with pytest.raises(NotFound):
        db.get_image("default", "a:1")


def test_failed_transaction_changes_nothing(db: MetadataDB) -> None:
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.put_image(NS, ImageRecord("a:1", TARGET))
        tx.put_content(NS, TARGET.digest, 1, {"x": "y"})
        raise RuntimeError("boom")
    assert db.list_images(NS) == []
    assert db.list_content(NS) == []


def test_content_labels_merge(db: MetadataDB) -> None:
    with db.transaction() as tx:
        tx.put_content(NS, TARGET.digest, 1, {"a": "1"})
        tx.put_content(NS, TARGET.digest, 1, {"b": "2"})
    assert db.get_content(NS, TARGET.digest).labels == {"a": "1", "b": "2"}
    with db.transaction() as tx:
        tx.set_content_labels(NS, TARGET.digest, {"c": "3"})
    assert db.get_content(NS, TARGET.digest).labels == {"c": "3"}


def test_leases(db: MetadataDB) -> None:
    with db.transaction() as tx:
        tx.create_lease(NS, Lease("l1", {"x": "y"}))
        tx.add_lease_resource(NS, "l1", "content", str(TARGET.digest))
    with pytest.raises(AlreadyExists), db.transaction() as tx:
        tx.create_lease(NS, Lease("l1"))
    with db.transaction() as tx:
        assert tx.lease_resources(NS) == [(NS, "l1", "content", str(TARGET.digest))]
        tx.delete_lease(NS, "l1")
        assert tx.lease_resources(NS) == []
    with pytest.raises(NotFound), db.transaction() as tx:
        tx.delete_lease(NS, "l1")


def test_runtime_objects_reserve_names_per_kind(db: MetadataDB) -> None:
    with db.transaction() as tx:
        tx.put_object(NS, "sandbox", "id1", "pod_default_uid_0", {"state": "ready"})
        tx.put_object(NS, "container", "c1", "pod_default_uid_0", {"state": "created"})
    with pytest.raises(AlreadyExists, match="reserved"), db.transaction() as tx:
        tx.put_object(NS, "sandbox", "id2", "pod_default_uid_0", {})
    with db.transaction() as tx:
        tx.put_object(NS, "sandbox", "id1", "pod_default_uid_0", {"state": "notready"})
        assert tx.get_object(NS, "sandbox", "id1") == {"state": "notready"}
        assert tx.object_id_by_name(NS, "sandbox", "pod_default_uid_0") == "id1"
        assert [d["state"] for d in tx.list_objects(NS, "container")] == ["created"]
        tx.delete_object(NS, "sandbox", "id1")
        with pytest.raises(NotFound):
            tx.get_object(NS, "sandbox", "id1")
        tx.put_object(NS, "sandbox", "id2", "pod_default_uid_0", {})
