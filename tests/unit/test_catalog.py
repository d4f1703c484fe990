"""The image catalog's cache: it forgets removed images and stays within its bound however large the configs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.image_service.catalog import ImageCatalog
from store.content import ContentStore
from store.descriptor import Descriptor
from store.digest import Digest, sha256_of
from store.metadata import ImageRecord, MetadataDB
from store.platforms import default_platform

NS = "k8s.io"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


def _blob(db: MetadataDB, content: ContentStore, data: bytes) -> Digest:
    digest = sha256_of(data)
    with content.writer(str(digest), digest, len(data)) as w:
        w.write(data)
        w.commit()
    with db.transaction() as tx:
        tx.put_content(NS, digest, len(data), {})
    return digest


def _image(db: MetadataDB, content: ContentStore, name: str, padding: int) -> None:
    # A large config, as some images carry (long histories, big labels).
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "history": [{"comment": name + "x" * padding}]}).encode()
    config_digest = _blob(db, content, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": [],
                           "config": {"mediaType": CONFIG, "digest": str(config_digest),
                                      "size": len(config)}}).encode()
    manifest_digest = _blob(db, content, manifest)
    with db.transaction() as tx:
        tx.put_image(NS, ImageRecord(name, Descriptor(MANIFEST, manifest_digest, len(manifest))))


Stores = tuple[MetadataDB, ContentStore, ImageCatalog]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    db, content = MetadataDB(tmp_path / "meta.db").open(), ContentStore(tmp_path / "content").open()
    yield db, content, ImageCatalog(db, content, NS, default_platform())
    db.close()


def test_removed_images_leave_the_cache(stores: Stores) -> None:
    db, content, catalog = stores
    for round_ in range(5):
        names = [f"example.com/image-{round_}-{i}:v1" for i in range(4)]
        for name in names:
            _image(db, content, name, 1000)
        assert len(catalog.all()) == 4
        with db.transaction() as tx:
            for name in names:
                tx.delete_image(NS, name)
        assert catalog.all() == []
    assert catalog.cached == 0


def test_the_cache_holds_a_bounded_number_of_config_bytes(stores: Stores) -> None:
    db, content, catalog = stores
    for i in range(12):
        _image(db, content, f"example.com/big-{i}:v1", 8 << 20)
    assert len(catalog.all()) == 12  # every image listed, cached or not
    assert catalog.cached < 12
    assert catalog.get("example.com/big-0:v1").id
