"""Pulls that must fail, and leave crishim's images and blobs exactly as they were."""

from __future__ import annotations

import json

import pytest

from tests.support.compare import grpc_code
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.procs import free_port
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest


@pytest.fixture
def seeded(crishim: Crishim, test_images: dict[str, PushedImage]) -> Crishim:
    # A non-empty starting point, so "nothing changed" also covers images that were already there.
    crishim.crictl("pull", test_images["oci"].ref)
    return crishim


def pull_fails(daemon: Crishim, ref: str, *extra: str) -> str:
    """Pull, expect failure, check nothing changed (partial downloads may stay in ingest/); return stderr."""
    images, blobs = daemon.images(), daemon.blobs()
    proc = daemon.crictl("pull", *extra, ref, check=False)
    assert proc.returncode != 0, f"pulling {ref!r} succeeded:\n{proc.stdout}"
    assert daemon.images() == images, "a failed pull changed the image list"
    assert daemon.blobs() == blobs, "a failed pull left new blobs"
    return proc.stderr


@pytest.mark.parametrize("missing", ["repository", "tag"])
def test_unknown_repository_or_tag_is_not_found(
    seeded: Crishim, containerd: Containerd, registry: Registry, missing: str
) -> None:
    repo = "test/no-such-repo" if missing == "repository" else "test/busybox-oci"
    ref = f"{registry.host}/{repo}:{'v1' if missing == 'repository' else 'no-such-tag'}"
    stderr = pull_fails(seeded, ref)
    expected = grpc_code(containerd.crictl_client.run("pull", ref, check=False).stderr)
    assert grpc_code(stderr) == expected == "NotFound", stderr
    assert "not found" in stderr.lower()


@pytest.mark.parametrize(
    "ref",
    [
        "UPPER/Case:tag",
        "a:b:c@@",
        "busybox@sha256:1234",  # digest of the wrong length
        "busybox:-leading-dash",
    ],
)
def test_invalid_reference_is_invalid_argument(seeded: Crishim, ref: str) -> None:
    # containerd 1.6 answers code Unknown ("invalid reference format"); crishim says InvalidArgument.
    stderr = pull_fails(seeded, ref)
    assert grpc_code(stderr) == "InvalidArgument", stderr


def test_unreachable_registry_fails(seeded: Crishim) -> None:
    stderr = pull_fails(seeded, f"127.0.0.1:{free_port()}/test/busybox-oci:v1")
    assert grpc_code(stderr) is not None, stderr


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def test_index_without_this_platform_is_not_found(seeded: Crishim, registry: Registry) -> None:
    config_bytes = json.dumps({"architecture": "arm64", "os": "linux",
                               "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config = push_blob(registry, "test/arm-only", config_bytes)
    manifest_doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                    "config": descriptor("application/vnd.oci.image.config.v1+json", config, len(config_bytes))}
    manifest = push_manifest(registry, "test/arm-only", "arm64", OCI_MANIFEST, manifest_doc)
    size = len(json.dumps(manifest_doc).encode())
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, manifest, size, platform={"os": "linux", "architecture": "arm64"})]}
    push_manifest(registry, "test/arm-only", "v1", OCI_INDEX, index)
    stderr = pull_fails(seeded, f"{registry.host}/test/arm-only:v1")
    assert grpc_code(stderr) == "NotFound", stderr
    assert "no match for platform" in stderr


def test_unsupported_config_media_type_is_invalid_argument(seeded: Crishim, registry: Registry) -> None:
    chart = b'{"name": "chart", "version": "1.0.0"}'
    config = push_blob(registry, "test/helm-chart", chart)
    manifest_doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": descriptor("application/vnd.cncf.helm.config.v1+json", config, len(chart)),
                    "layers": []}
    push_manifest(registry, "test/helm-chart", "v1", OCI_MANIFEST, manifest_doc)
    stderr = pull_fails(seeded, f"{registry.host}/test/helm-chart:v1")
    assert grpc_code(stderr) == "InvalidArgument", stderr
    assert "unsupported media type" in stderr
