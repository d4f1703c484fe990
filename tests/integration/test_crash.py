"""kill -9 of the daemon in the middle of unpacking: after a restart no half-made snapshot is listed,
no orphan folder is left, and pulling again completes."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.support.daemon import Crishim
from tests.support.images import PushedImage, describe
from tests.support.layout import OCI_CONFIG, OCI_MANIFEST, Layout, sha256_digest
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.tools import binary

CHUNK = b"\0" * (32 << 20)
FILES = 16  # 512 MiB once unpacked, a few KiB compressed: slow to write, quick to fetch
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"


@pytest.fixture(scope="module")
def big_image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> PushedImage:
    path = tmp_path_factory.mktemp("big-layout")
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    layout = Layout(path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for i in range(FILES):
            info = tarfile.TarInfo(f"big/file{i}")
            info.size = len(CHUNK)
            archive.addfile(info, io.BytesIO(CHUNK))
    layer = layout.write(gzip.compress(raw.getvalue(), compresslevel=1), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = layout.write_json({"architecture": "amd64", "os": "linux", "config": {},
                                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw.getvalue())]}}, OCI_CONFIG)
    manifest = layout.write_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.to_json(),
                                  "layers": [layer.to_json()]}, OCI_MANIFEST)
    layout.tag("big", manifest)
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
        f"oci:{path}:big", f"docker://{registry.host}/test/big:v1")
    return describe("big", registry, "test/big", "v1")


def snapshots(daemon: Crishim) -> list[list[str]]:
    out = run(binary("ctr"), "-a", str(daemon.socket), "-n", "k8s.io", "snapshot", "ls").stdout
    return [line.split() for line in out.splitlines()[1:]]


def test_kill_during_unpack_leaves_nothing_half_made(crishim: Crishim, big_image: PushedImage) -> None:
    puller = threading.Thread(target=crishim.crictl, args=("pull", big_image.ref), kwargs={"check": False})
    puller.start()
    deadline = time.monotonic() + 60
    while not any(row[-1] == "Active" for row in snapshots(crishim)):
        assert time.monotonic() < deadline, "the unpack never started"
        time.sleep(0.01)
    crishim.kill()
    puller.join()
    folders = Path(crishim.root) / OVERLAY / "snapshots"
    assert any(folders.iterdir()), "the kill came after the unpack was cleaned up; nothing was tested"

    crishim.start()
    assert snapshots(crishim) == []
    assert list(folders.iterdir()) == []
    assert crishim.images() == []

    crishim.crictl("pull", big_image.ref)
    config = json.loads(run(binary("skopeo"), "inspect", "--tls-verify=false", "--config",
                            f"docker://{big_image.ref}").stdout)
    assert snapshots(crishim) == [[config["rootfs"]["diff_ids"][0], "Committed"]]
    assert [image["id"] for image in crishim.images()] == [big_image.config_digest]
