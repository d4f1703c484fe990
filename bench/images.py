"""Benchmark inputs, built independently of crishim: a many-layer image and the busybox test images."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from tests.support.layout import OCI_CONFIG, OCI_MANIFEST, Layout, sha256_digest
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.tools import binary

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def push_layered_image(workdir: Path, registry: Registry, layers: int, files: int = 4,
                       size: int = 256 << 10, name: str = "") -> str:
    """An image of ``layers`` layers, each adding ``files`` files of random bytes; returns its reference."""
    name = name or f"layers-{layers}"
    path = workdir / name
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    layout = Layout(path)
    descriptors, diff_ids = [], []
    for i in range(layers):
        raw = _layer_tar(i, files, size)
        descriptors.append(layout.write(gzip.compress(raw, compresslevel=6), LAYER).to_json())
        diff_ids.append(sha256_digest(raw))
    config = layout.write_json({"architecture": "amd64", "os": "linux", "config": {},
                                "rootfs": {"type": "layers", "diff_ids": diff_ids}}, OCI_CONFIG)
    manifest = layout.write_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.to_json(),
                                  "layers": descriptors}, OCI_MANIFEST)
    layout.tag("bench", manifest)
    ref = f"{registry.host}/bench/{name}:v1"
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
        f"oci:{path}:bench", f"docker://{ref}")
    return ref


def _layer_tar(index: int, files: int, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        folder = tarfile.TarInfo(f"layer{index}")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for j in range(files):
            data = os.urandom(size // 2) + bytes(size // 2)  # half compressible, like real binaries
            info = tarfile.TarInfo(f"layer{index}/file{j}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def push_seed_image(registry: Registry) -> str | None:
    """The Debian + nginx image the tests build (cached under /var/cache/crishim-tests), if it was built."""
    from tests.support.seed_image import PUSH_TAG, REPOSITORY, TAG, cache_dir

    layout = cache_dir() / "layout"
    if not (layout / "index.json").exists():
        return None
    ref = f"{registry.host}/{REPOSITORY}:{PUSH_TAG}"
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
        f"oci:{layout}:{TAG}", f"docker://{ref}", timeout=600)
    return ref
