"""store.importer on hand-made archives: ctr's naming rules, the reference labels, and a failed import
leaving no image, no lease and no recorded content."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from errdefs import InvalidArgument, NotFound
from store.content import ContentStore
from store.gc import collect
from store.importer import Importer, ImportOptions, UnpackTarget
from store.metadata import MetadataDB
from store.platforms import Platform

NAMESPACE = "k8s.io"
HOST = Platform("linux", "amd64")


def layer_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    return out.getvalue()


def docker_archive(tags: list[str], architecture: str = "amd64", config_name: str = "config.json") -> bytes:
    layer = layer_tar()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": ["l/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("config.json", config), ("l/layer.tar", layer), ("repositories", b"{}"),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Importer, MetadataDB, ContentStore]]:
    content = ContentStore(tmp_path / "content").open()
    db = MetadataDB(tmp_path / "meta.db").open()
    yield Importer(content, db, HOST), db, content
    db.close()


def unpacked(target: UnpackTarget) -> dict[str, dict[str, str]]:
    return {}


def names(db: MetadataDB) -> list[str]:
    return [image.name for image in db.list_images(NAMESPACE)]


def test_docker_archive_tags_are_normalised_and_labelled(store: tuple[Importer, MetadataDB, ContentStore]) -> None:
    importer, db, content = store
    images = importer.import_archive(NAMESPACE, io.BytesIO(docker_archive(["busybox:1", "me/app:2"])),
                                     ImportOptions(), unpacked)
    assert names(db) == ["docker.io/library/busybox:1", "docker.io/me/app:2"]
    assert {image.target.media_type for image in images} == {"application/vnd.docker.distribution.manifest.v2+json"}
    manifest = db.get_content(NAMESPACE, images[0].target.digest)
    assert set(manifest.labels) == {"containerd.io/gc.ref.content.config", "containerd.io/gc.ref.content.l.0"}
    collect(db, content)
    # The repositories file and the made index are nobody's: collected, as containerd collects them.
    assert len(db.list_content(NAMESPACE)) == 3


def test_untagged_image_needs_a_name_or_digests(store: tuple[Importer, MetadataDB, ContentStore]) -> None:
    importer, db, _ = store
    with pytest.raises(NotFound, match="names no image"):
        importer.import_archive(NAMESPACE, io.BytesIO(docker_archive([])), ImportOptions(), unpacked)
    assert names(db) == []
    images = importer.import_archive(NAMESPACE, io.BytesIO(docker_archive([])), ImportOptions(digests=True),
                                     unpacked)
    assert names(db) == [f"import-{date.today():%Y-%m-%d}@{images[0].target.digest}"]


def test_name_and_base_name(store: tuple[Importer, MetadataDB, ContentStore]) -> None:
    importer, db, _ = store
    importer.import_archive(NAMESPACE, io.BytesIO(docker_archive(["busybox:1"])), ImportOptions(name="demo"),
                            unpacked)
    assert names(db) == ["docker.io/library/demo:latest"]
    options = ImportOptions(base_name="docker.io/other", digests=True, skip_digest_for_named=True)
    images = importer.import_archive(NAMESPACE, io.BytesIO(docker_archive(["busybox:1"])), options, unpacked)
    # As ctr: a base name filters only tag-only OCI names; the image named by the archive gets no digest name.
    assert [image.name for image in images] == ["docker.io/library/busybox:1"]
    images = importer.import_archive(NAMESPACE, io.BytesIO(docker_archive(["busybox:1"])),
                                     ImportOptions(base_name="docker.io/other", digests=True), unpacked)
    assert [image.name for image in images] == ["docker.io/library/busybox:1",
                                                f"docker.io/other@{images[0].target.digest}"]


def test_other_platform_is_stored_not_unpacked(store: tuple[Importer, MetadataDB, ContentStore]) -> None:
    importer, db, _ = store
    calls: list[UnpackTarget] = []
    images = importer.import_archive(NAMESPACE, io.BytesIO(docker_archive(["busybox:arm"], "arm64")),
                                     ImportOptions(), lambda target: calls.append(target) or {})
    assert calls == [] and [image.unpacked for image in images] == [False]
    assert importer.config_for(images[0].target) is None


@pytest.mark.parametrize(("data", "message"), [
    (b"not a tarball" * 100, "not a tar archive"),
    (docker_archive(["x:1"], config_name="missing.json"), "image config 'missing.json' not found"),
])
def test_bad_archive_leaves_nothing(store: tuple[Importer, MetadataDB, ContentStore], data: bytes,
                                    message: str) -> None:
    importer, db, content = store
    with pytest.raises(InvalidArgument, match=message):
        importer.import_archive(NAMESPACE, io.BytesIO(data), ImportOptions(), unpacked)
    collect(db, content)
    assert names(db) == [] and db.list_content(NAMESPACE) == [] and list(content.walk()) == []
    assert list((content.root / "ingest").iterdir()) == []
