"""Pulls that must fail, and leave crishim's images and blobs exactly as they were."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.compare import grpc_code
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.procs import free_port
from tests.support.proxy_registry import overriding_proxy
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest, push_variant


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


class _EndlessManifest(BaseHTTPRequestHandler):
    """A HEAD without Docker-Content-Digest (so a client must GET), and a GET whose body never ends."""

    sent = 0

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", OCI_MANIFEST)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", OCI_MANIFEST)
        self.end_headers()
        chunk = b" " * (1 << 20)
        try:
            for _ in range(ENDLESS_MIB):
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except OSError:
            pass  # the client stopped reading, as it should

    def log_message(self, *args: object) -> None:
        pass


ENDLESS_MIB = 512


@pytest.fixture
def endless_manifest() -> Iterator[str]:
    _EndlessManifest.sent = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessManifest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _peak_rss_mib(pid: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]) // 1024


def test_manifest_without_digest_header_is_read_within_its_bound(seeded: Crishim, endless_manifest: str) -> None:
    assert seeded.process is not None
    peak_before = _peak_rss_mib(seeded.process.pid)
    stderr = pull_fails(seeded, f"{endless_manifest}/test/endless:v1")
    assert grpc_code(stderr) == "InvalidArgument", stderr
    assert "manifest larger than" in stderr
    # The 4 MiB bound plus what socket buffers hold; the whole body is half a GiB.
    assert _EndlessManifest.sent < 64 << 20, f"the client read {_EndlessManifest.sent} bytes"
    assert _peak_rss_mib(seeded.process.pid) - peak_before < 64


def _deeply_nested_manifest(registry: Registry, base: PushedImage) -> bytes:
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        doc = client.get(f"/v2/{base.repository}/manifests/{base.tag}", headers={"Accept": OCI_MANIFEST}).json()
    # Deeper than Python's recursion limit, within the registry's (Go's encoding/json allows 10,000).
    body = json.dumps(doc)
    return (body[:-1] + ', "nested": ' + "[" * 5000 + "]" * 5000 + "}").encode()


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(key, value)


def _manifest_of(registry: Registry, image: PushedImage) -> dict[str, Any]:
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        got = client.get(f"/v2/{image.repository}/manifests/{image.tag}", headers={"Accept": OCI_MANIFEST})
        got.raise_for_status()
        return dict(got.json())


@pytest.mark.parametrize("annotations", [["a", "b"], {"a": {"b": "c"}}, "text"])
def test_descriptor_annotations_that_are_no_string_map_are_invalid_argument(
    seeded: Crishim, registry: Registry, test_images: dict[str, PushedImage], annotations: object
) -> None:
    base = test_images["oci"]
    manifest = _manifest_of(registry, base)
    manifest["layers"][0]["annotations"] = annotations
    path = f"/v2/{base.repository}/manifests/{base.tag}"
    with overriding_proxy(registry, {path: (OCI_MANIFEST, json.dumps(manifest).encode())}) as host:
        stderr = pull_fails(seeded, f"{host}/{base.repository}:{base.tag}")
    assert grpc_code(stderr) == "InvalidArgument", stderr


@pytest.mark.parametrize("case", ["config-string", "config-list", "nested-5000"])
def test_malformed_image_documents_are_invalid_argument(
    seeded: Crishim, registry: Registry, test_images: dict[str, PushedImage], case: str
) -> None:
    base = test_images["oci"]
    repository = f"test/malformed-{case}"
    if case == "config-string":
        ref = push_variant(registry, base.repository, base.tag, repository, edit_config=_set("config", "text"))
    elif case == "config-list":
        ref = push_variant(registry, base.repository, base.tag, repository, edit_config=_set("config", []))
    else:
        ref = push_variant(registry, base.repository, base.tag, repository,
                           raw_manifest=_deeply_nested_manifest(registry, base))
    stderr = pull_fails(seeded, ref)
    assert grpc_code(stderr) == "InvalidArgument", stderr
