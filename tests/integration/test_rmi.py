"""crictl rmi: the image goes, blobs only it referenced go, shared blobs stay — as in containerd."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.compare import assert_same_images
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.procs import wait_until
from tests.support.seed_image import SeedImage

# Blobs and snapshots go in a collection after RemoveImage answers, in crishim as in containerd.
COLLECTED_WITHIN = 60.0


def _blobs_become(daemon: Crishim, expected: set[str]) -> None:
    wait_until(lambda: daemon.blobs() == expected, timeout=COLLECTED_WITHIN,
               what=f"crishim's blobs to be {sorted(expected)}")


def _blobs_of(image: PushedImage) -> set[str]:
    return {image.digest, image.config_digest, *image.layer_digests}


def test_rmi_matches_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    # oci and docker share a config (one image id, two references); user1000 shares only the layers.
    oci, docker, user = test_images["oci"], test_images["docker"], test_images["user1000"]
    for image in (oci, docker, user):
        oracle.crictl("pull", image.ref)
        crishim.crictl("pull", image.ref)
    oracle.crictl("rmi", oci.ref)
    crishim.crictl("rmi", oci.ref)
    # containerd's CRI removes every reference of the image id, so the docker tag goes too.
    assert_same_images(crishim.images(), oracle.crictl_client.images())
    _blobs_become(crishim, oracle.blobs())
    assert _blobs_of(user) <= crishim.blobs(), "blobs still used by user1000 were removed"
    assert not ((_blobs_of(oci) | _blobs_of(docker)) - _blobs_of(user)) & crishim.blobs()


def test_rmi_by_id_matches_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    for name in ("oci", "nobody"):
        oracle.crictl("pull", test_images[name].ref)
        crishim.crictl("pull", test_images[name].ref)
    image_id = test_images["nobody"].config_digest
    oracle.crictl("rmi", image_id)
    crishim.crictl("rmi", image_id)
    assert_same_images(crishim.images(), oracle.crictl_client.images())
    _blobs_become(crishim, oracle.blobs())


def test_rmi_of_the_only_image_empties_the_store(
    crishim: Crishim, test_images: dict[str, PushedImage]
) -> None:
    crishim.crictl("pull", test_images["multiarch"].ref)
    crishim.crictl("rmi", test_images["multiarch"].ref)
    assert crishim.images() == []
    _blobs_become(crishim, set())
    assert crishim.crictl("images", "-q").stdout.strip() == ""


def _rpc_durations_ms(log_path: Path, method: str) -> list[float]:
    lines = (json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{"))
    return [line["duration_ms"] for line in lines if line.get("event") == "rpc" and line.get("method") == method]


def _snapshot_folders(daemon: Crishim) -> list[str]:
    return [p.name for p in (daemon.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots").iterdir()]


def test_rmi_of_a_large_image_answers_at_once_and_collects_after(crishim: Crishim, seed_image: SeedImage) -> None:
    ref = seed_image.pushed.ref
    crishim.crictl("pull", ref)
    assert _snapshot_folders(crishim)
    crishim.crictl("rmi", ref)
    assert crishim.images() == []
    (took,) = _rpc_durations_ms(crishim.log_path, "/runtime.v1.ImageService/RemoveImage")
    assert took < 1000, f"RemoveImage took {took} ms"
    _blobs_become(crishim, set())
    wait_until(lambda: _snapshot_folders(crishim) == [], timeout=COLLECTED_WITHIN, what="snapshots collected")
