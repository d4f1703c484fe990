"""The test infrastructure itself: registries, the images on them, and containerd pulling every one."""

from __future__ import annotations

import gzip
import io
import tarfile

import httpx
import pytest

from tests.support.containerd import Containerd
from tests.support.images import AUTH, PULLABLE, PushedImage
from tests.support.registry import Registry

LAYER_TYPES = {
    "oci": "application/vnd.oci.image.layer.v1.tar+gzip",
    "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "uncompressed": "application/vnd.oci.image.layer.v1.tar",
}


def _get(registry: Registry, path: str, accept: str = "*/*") -> httpx.Response:
    response = httpx.get(f"{registry.url}{path}", auth=registry.auth, headers={"Accept": accept}, timeout=10)
    response.raise_for_status()
    return response


def test_auth_registry_rejects_anonymous_requests(auth_registry: Registry) -> None:
    assert httpx.get(f"{auth_registry.url}/v2/", timeout=5).status_code == 401
    assert httpx.get(f"{auth_registry.url}/v2/", auth=auth_registry.auth, timeout=5).status_code == 200


@pytest.mark.parametrize("name", list(LAYER_TYPES))
def test_variants_have_the_expected_layer_media_types(
    name: str, test_images: dict[str, PushedImage], registry: Registry
) -> None:
    image = test_images[name]
    manifest = _get(registry, f"/v2/{image.repository}/manifests/{image.digest}", image.media_type).json()
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_TYPES[name]}
    assert len(manifest["layers"]) == 3


def test_base_image_layers_add_then_delete_a_file(
    test_images: dict[str, PushedImage], registry: Registry
) -> None:
    image = test_images["oci"]
    names = []
    for digest in image.layer_digests:
        blob = _get(registry, f"/v2/{image.repository}/blobs/{digest}").content
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            names.append({m.name.lstrip("./") for m in tar.getmembers()})
    assert {"bin/busybox", "bin/sh"} <= names[0]
    assert {"etc/passwd", "etc/group", "etc/doomed.txt"} <= names[1]
    assert "etc/.wh.doomed.txt" in names[2]


def test_same_config_across_compression_variants(test_images: dict[str, PushedImage]) -> None:
    configs = {test_images[n].config_digest for n in ("oci", "docker", "zstd", "uncompressed")}
    digests = {test_images[n].digest for n in ("oci", "docker", "zstd", "uncompressed")}
    assert len(configs) == 1
    assert len(digests) == 4


def test_multiarch_index_has_three_platforms(test_images: dict[str, PushedImage]) -> None:
    image = test_images["multiarch"]
    assert image.is_index
    assert [p.platform for p in image.platforms] == ["linux/arm64", "linux/amd64", "linux/arm/v7"]
    assert len({p.config_digest for p in image.platforms}) == 3
    assert image.config_digest == image.platform("linux/amd64").config_digest


def test_containerd_pulls_every_image_with_crictl(
    oracle: Containerd, test_images: dict[str, PushedImage], auth_registry: Registry
) -> None:
    for name in PULLABLE:
        oracle.crictl("pull", test_images[name].ref)
    creds = f"{auth_registry.username}:{auth_registry.password}"
    oracle.crictl("pull", "--creds", creds, test_images[AUTH].ref)
    by_id = {image["id"]: image for image in oracle.crictl_json("images")["images"]}
    for name in (*PULLABLE, AUTH):
        image = test_images[name]
        assert image.ref in by_id[image.config_digest]["repoTags"], name
        assert image.repo_digest in by_id[image.config_digest]["repoDigests"], name


def test_containerd_pulls_every_image_with_ctr(
    oracle: Containerd, test_images: dict[str, PushedImage], auth_registry: Registry
) -> None:
    for name in PULLABLE:
        oracle.ctr("images", "pull", "--plain-http", test_images[name].ref)
    creds = f"{auth_registry.username}:{auth_registry.password}"
    oracle.ctr("images", "pull", "--plain-http", "--user", creds, test_images[AUTH].ref)
    listed = oracle.ctr("images", "ls", "-q").split()
    assert {test_images[n].ref for n in (*PULLABLE, AUTH)} <= set(listed)
