"""ImageService behaviour beyond a single pull: several images, digests, the index, fs info, metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.compare import assert_same_images
from tests.support.containerd import Containerd
from tests.support.daemon import Crishim
from tests.support.images import PULLABLE, PushedImage

PULL_METHOD = "/runtime.v1.ImageService/PullImage"


def _version_fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+):\s+(.*?)\s*$", text, flags=re.MULTILINE))


def test_version_reports_crishim_and_cri_v1(crishim: Crishim, containerd: Containerd) -> None:
    mine = _version_fields(crishim.crictl("version").stdout)
    theirs = _version_fields(containerd.crictl("version"))
    assert mine["RuntimeName"] == "crishim"
    assert mine["RuntimeApiVersion"] == theirs["RuntimeApiVersion"] == "v1"
    assert mine["Version"] == theirs["Version"]  # the kubelet API version string, "0.1.0"
    assert mine["RuntimeVersion"]


def test_all_images_pulled_in_order_match_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    # The compression variants share one config, so containerd merges their tags and digests under one id
    # and keeps the size computed for the first reference pulled.
    for name in PULLABLE:
        oracle.crictl("pull", test_images[name].ref)
        crishim.crictl("pull", test_images[name].ref)
    assert_same_images(crishim.images(), oracle.crictl_client.images())
    for name in PULLABLE:
        ref = test_images[name].ref
        assert crishim.crictl_json("inspecti", ref)["status"] == oracle.crictl_json("inspecti", ref)["status"]


def test_pull_by_digest_matches_containerd(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    ref = test_images["oci"].repo_digest
    oracle.crictl("pull", ref)
    crishim.crictl("pull", ref)
    assert_same_images(crishim.images(), oracle.crictl_client.images())


def test_pulling_twice_changes_nothing(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    ref = test_images["oci"].ref
    crishim.crictl("pull", ref)
    images, blobs = crishim.images(), crishim.blobs()
    crishim.crictl("pull", ref)
    assert crishim.images() == images
    assert crishim.blobs() == blobs


def test_multiarch_index_selects_linux_amd64(
    crishim: Crishim, oracle: Containerd, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["multiarch"]
    oracle.crictl("pull", image.ref)
    crishim.crictl("pull", image.ref)
    (entry,) = crishim.images()
    (expected,) = oracle.crictl_client.images()
    assert entry["id"] == expected["id"] == image.platform("linux/amd64").config_digest
    assert entry["repoDigests"] == [image.repo_digest]  # the index digest, not the platform manifest's
    others = {p.digest for p in image.platforms if p.platform != "linux/amd64"}
    assert not others & crishim.blobs(), "manifests of other platforms were downloaded"


def test_pull_works_without_hosts_toml_on_loopback(
    crishim_factory: Callable[..., Crishim], test_images: dict[str, PushedImage]
) -> None:
    """containerd uses plain HTTP for 127.0.0.0/8 registries without a hosts.toml; so must crishim."""
    daemon = crishim_factory(trusted_hosts=[])
    image = test_images["oci"]
    daemon.crictl("pull", image.ref)
    assert [i["id"] for i in daemon.images()] == [image.config_digest]


def test_imagefsinfo_reports_usage_under_root(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    crishim.crictl("pull", test_images["oci"].ref)
    status = _imagefsinfo_once_measured(crishim)
    (fs,) = status["imageFilesystems"]
    assert fs["fsId"]["mountpoint"].startswith(str(crishim.root) + "/")
    assert int(fs["usedBytes"]["value"]) > 0
    assert int(fs["timestamp"]) > 0
    # Containers' writable layers share that filesystem (kubelet needs an entry for them, the same one).
    assert status["containerFilesystems"] == [fs]


def _imagefsinfo_once_measured(crishim: Crishim) -> dict[str, Any]:
    """crictl imagefsinfo once a measurement pass (the next comes soon after a pull) has counted the image."""
    deadline = time.monotonic() + 30
    while True:
        status: dict[str, Any] = crishim.crictl_json("imagefsinfo")["status"]
        if int(status["imageFilesystems"][0]["usedBytes"]["value"]) > 0:
            return status
        assert time.monotonic() < deadline, f"no measurement pass counted the image pulled: {status}"
        time.sleep(0.2)


def test_metrics_count_pulls(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    crishim.crictl("pull", test_images["oci"].ref)
    text = httpx.get(crishim.metrics_url, timeout=10).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    grpc = [s for s in samples if s.name == "crishim_grpc_requests_total"]
    assert any(s.labels.get("method") == PULL_METHOD and s.value > 0 for s in grpc), grpc
    pulls = [s for s in samples if s.name == "crishim_image_pulls_total"]
    assert sum(s.value for s in pulls) > 0, pulls
