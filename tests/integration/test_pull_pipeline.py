"""Layers unpacked while they download, side by side: what a failure leaves, what concurrent pulls share."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from tests.support.compare import grpc_code
from tests.support.daemon import Crishim
from tests.support.layout import OCI_CONFIG, OCI_MANIFEST
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _layer(name: str, size: int) -> tuple[bytes, str]:
    """A gzip layer of one file of random bytes (so compression keeps it large); returns it and its diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        archive.addfile(info, io.BytesIO(os.urandom(size)))
    return gzip.compress(raw.getvalue(), compresslevel=1), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


def push_image(registry: Registry, repository: str, sizes: list[int],
               wrong_diff_id: int | None = None) -> tuple[str, list[str]]:
    """Push an image of one-file layers; with ``wrong_diff_id`` that layer's diff ID in the config is wrong."""
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        blob, diff_id = _layer(f"file{i}", size)
        layers.append(descriptor(LAYER, push_blob(registry, repository, blob), len(blob)))
        diff_ids.append("sha256:" + "0" * 64 if i == wrong_diff_id else diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, push_blob(registry, repository, config), len(config)),
                "layers": layers}
    push_manifest(registry, repository, "v1", OCI_MANIFEST, manifest)
    return f"{registry.host}/{repository}:v1", [str(layer["digest"]) for layer in layers]


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_a_diff_id_mismatch_stops_the_pull_and_leaves_nothing_of_it(crishim: Crishim, registry: Registry) -> None:
    ref, digests = push_image(registry, "test/pipeline-mismatch", [8 << 20, 64 << 10, 8 << 20], wrong_diff_id=1)
    snapshots = crishim.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    ingests = crishim.root / "io.containerd.content.v1.content" / "ingest"
    images, blobs, folders = crishim.images(), crishim.blobs(), _listing(snapshots)
    proc = crishim.crictl("pull", ref, check=False)
    assert proc.returncode != 0
    assert grpc_code(proc.stderr) == "DataLoss", proc.stderr
    assert f"layer 1 ({digests[1]})" in proc.stderr and "diff ID" in proc.stderr, proc.stderr
    assert crishim.images() == images
    assert crishim.blobs() == blobs
    assert _listing(snapshots) == folders, "a half-made snapshot was left"
    assert _listing(ingests) == [], "an ingest of the failed pull was left"
