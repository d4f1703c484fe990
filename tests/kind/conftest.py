"""The kind tests: crishim's systemd unit in a node container, and a three-node kind cluster whose nodes run
crishim (tests/support/kind_cluster.py).

They take long — a cold run builds the node image, Kubernetes' control plane and its add-ons from source —
and need docker, so they run when asked: `make test-kind` (CRISHIM_KIND=1). Otherwise they skip, saying how
to run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cri_env import cri, cri_factory  # noqa: F401  (the image tests run the images in crishim)
from tests.support.images import PushedImage
from tests.support.kind_cluster import BUSYBOX, NGINX, KindCluster, build_node_image, kind_cluster, kind_docker
from tests.support.kube_build import CACHE_ROOT, pinned_versions
from tests.support.procs import run
from tests.support.report import say
from tests.support.seed_image import SeedImage
from tests.support.tools import binary, require_root

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.kind)


@pytest.fixture(scope="session")
def docker_env() -> Iterator[dict[str, str]]:
    if os.environ.get("CRISHIM_KIND") != "1":
        pytest.skip("kind tests run with `make test-kind` (CRISHIM_KIND=1): they build a node image and a "
                    "three-node cluster in docker, which takes long")
    require_root("docker and kind")
    with kind_docker() as env:
        yield env


@pytest.fixture(scope="session")
def node_image(request: pytest.FixtureRequest, docker_env: dict[str, str]) -> str:
    image, seconds = build_node_image(docker_env)
    say(request.config, f"kind node image {image}: ready in {seconds:.0f} s")
    return image


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            docker_env: dict[str, str], node_image: str) -> Iterator[KindCluster]:
    kubectl = str(CACHE_ROOT / "kube" / pinned_versions()[0] / "kubectl")
    with kind_cluster(tmp_path_factory.mktemp("kind"), docker_env, node_image, kubectl) as made:
        say(request.config, f"kind cluster: created in {made.timings.create_seconds:.0f} s, all nodes Ready "
                            f"after {made.timings.ready_seconds:.0f} s")
        yield made


@pytest.fixture(scope="session")
def loaded_images(cluster: KindCluster, seed_image: SeedImage, test_images: dict[str, PushedImage],
                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """The two ways kind puts an image on its nodes, both running `ctr images import` against crishim."""
    work = tmp_path_factory.mktemp("kind-images")
    skopeo = binary("skopeo")
    archive = work / "nginx.tar"
    run(skopeo, "--insecure-policy", "copy", "-q", f"oci:{seed_image.layout}:bookworm-nginx",
        f"docker-archive:{archive}:{NGINX}", timeout=600)
    cluster.kind_run("load", "image-archive", str(archive))
    busybox = work / "busybox.tar"
    run(skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{test_images['oci'].ref}",
        f"docker-archive:{busybox}:{BUSYBOX}", timeout=300)
    cluster.docker("load", "-i", str(busybox))
    cluster.kind_run("load", "docker-image", BUSYBOX)
