"""End-to-end tests: real kubelet, kube-apiserver, etcd and kubectl driving crishim.

Every test here is marked ``e2e`` (``pytest -m e2e`` runs them alone) and runs after the rest of the session:
the Kubernetes binaries are built in the background from the start of the session (see
tests/support/kube_build.py), so the other phases run while they compile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import PushedImage
from tests.support.kube_build import (
    CACHE_ROOT,
    Build,
    KubeBinaries,
    pinned_versions,
    start_background_build,
    wait_for_build,
)
from tests.support.kube_node import KubeNode, kube_node
from tests.support.registry import Registry
from tests.support.report import say
from tests.support.tools import require_root

HERE = Path(__file__).resolve().parent
BUILD = pytest.StashKey[Build]()


def _is_e2e(item: pytest.Item) -> bool:
    return HERE in item.path.parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e = [item for item in items if _is_e2e(item)]
    for item in e2e:
        item.add_marker(pytest.mark.e2e)
    # Last, so the background build has the whole rest of the session to finish.
    items[:] = [item for item in items if not _is_e2e(item)] + e2e


def _build_log() -> Path:
    return CACHE_ROOT / "kube" / f"build-{pinned_versions()[0]}.log"


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or os.geteuid() != 0 or not any(_is_e2e(item) for item in session.items):
        return  # the e2e tests need root; without it they skip, and nothing is worth building
    build = start_background_build(_build_log())
    session.config.stash[BUILD] = build
    if build.process is not None:
        say(session.config, f"kube binaries: not cached, building in the background (log {build.log})")


@pytest.fixture(scope="session")
def kube_binaries(request: pytest.FixtureRequest) -> KubeBinaries:
    require_root("kubelet (cgroups, mounts, namespaces)")
    binaries, waited = wait_for_build(request.config.stash.get(BUILD, None), _build_log())
    origin = f"waited {waited:.0f} s for the build" if waited else "cached"
    say(request.config, f"kube binaries {binaries.version}: {origin} (the build took "
                        f"{binaries.kube_build_seconds} s)")
    return binaries


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry, test_images: dict[str, PushedImage],
            kube_binaries: KubeBinaries) -> Iterator[KubeNode]:
    """One node with etcd and kube-apiserver for a module's tests; each cleans up its own objects.

    Per module, not per session: a node's CNI network holds the lock that serialises test networks for its
    whole life (tests/support/cni_network.py), so a session-wide one would keep every other node waiting."""
    with kube_node(tmp_path_factory.mktemp("cluster"), registry, test_images["oci"], kube_binaries,
                   with_control_plane=True) as node:
        yield node
