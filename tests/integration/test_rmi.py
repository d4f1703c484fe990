"""crictl rmi: the image goes, blobs only it referenced go, shared blobs stay — as in containerd."""

from __future__ import annotations

from tests.support.compare import assert_same_images
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import PushedImage


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
    assert crishim.blobs() == oracle.blobs()
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
    assert crishim.blobs() == oracle.blobs()


def test_rmi_of_the_only_image_empties_the_store(
    crishim: Crishim, test_images: dict[str, PushedImage]
) -> None:
    crishim.crictl("pull", test_images["multiarch"].ref)
    crishim.crictl("rmi", test_images["multiarch"].ref)
    assert crishim.images() == []
    assert crishim.blobs() == set()
    assert crishim.crictl("images", "-q").stdout.strip() == ""
