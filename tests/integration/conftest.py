"""Integration-test fixtures built on the session services in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.containerd import Containerd
from tests.support.containerd_pods import containerd_pods, pause_image  # noqa: F401  (fixtures of the oracle tests)
from tests.support.cri_env import cri, cri_factory  # noqa: F401  (fixtures of the pod and container tests)
from tests.support.daemon import Crishim, launch
from tests.support.images import PULLABLE, PushedImage
from tests.support.pull_pair import PullPair, capture
from tests.support.registry import Registry


@pytest.fixture(scope="module", params=PULLABLE)
def pulled(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    containerd: Containerd,
    registry: Registry,
    auth_registry: Registry,
    test_images: dict[str, PushedImage],
) -> Iterator[PullPair]:
    image = test_images[request.param]
    containerd.reset()
    containerd.crictl("pull", image.ref)
    daemon = launch(tmp_path_factory.mktemp(f"crishim-{image.name}"), [registry.host, auth_registry.host])
    failures_before = request.session.testsfailed
    try:
        pair = capture(image, daemon, containerd)
    except Exception:
        _print_log(daemon)
        daemon.cleanup()
        raise
    yield pair
    if request.session.testsfailed > failures_before:
        _print_log(daemon)
    daemon.cleanup()


def _print_log(daemon: Crishim) -> None:
    print(f"\n--- crishim log tail ({daemon.log_path}) ---\n{daemon.log_tail()}")
