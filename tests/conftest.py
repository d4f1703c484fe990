"""Session-wide real services for the integration and end-to-end tests.

Fixtures: registry, auth_registry, test_images, special_images (hand-made layers), seed_image (Debian
bookworm with nginx, cached), containerd (the oracle), oracle (containerd reset for one test), crishim_factory
and crishim (the daemon under test). Nothing starts unless a test asks for it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.support.containerd import Containerd, containerd_under
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.images import PushedImage, build_and_push
from tests.support.registry import Registry, start_registry
from tests.support.report import say
from tests.support.seed_image import SeedImage, provide_seed_image
from tests.support.special_images import SpecialImage, build_and_push_special

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
ROOT_FIXTURES = {"containerd", "oracle", "pulled"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the containerd oracle need root; mark them so `-m "not root"` deselects them up front.
    for item in items:
        if ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's outcome so fixtures can print daemon logs on failure during teardown.
    report: pytest.TestReport = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def phase_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    # A random password: a pull that succeeds without being given it cannot be a coincidence.
    reg = start_registry(
        tmp_path_factory.mktemp("auth-registry"), username="crishim", password=secrets.token_urlsafe(12)
    )
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def test_images(
    registry: Registry, auth_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, PushedImage]:
    return build_and_push(tmp_path_factory.mktemp("images"), registry, auth_registry)


@pytest.fixture(scope="session")
def special_images(
    request: pytest.FixtureRequest, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SpecialImage]:
    return build_and_push_special(tmp_path_factory.mktemp("special-images"), registry,
                                  lambda line: say(request.config, line))


@pytest.fixture(scope="session")
def seed_image(request: pytest.FixtureRequest, registry: Registry) -> SeedImage:
    return provide_seed_image(registry, request.config)


@pytest.fixture(scope="session")
def containerd(
    registry: Registry, auth_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containerd]:
    with containerd_under(tmp_path_factory.getbasetemp(), [registry.host, auth_registry.host]) as oracle:
        yield oracle


@pytest.fixture
def oracle(containerd: Containerd) -> Containerd:
    """containerd with no images, so its labels and blobs depend only on what the test pulls."""
    containerd.reset()
    return containerd


@pytest.fixture
def crishim_factory(
    request: pytest.FixtureRequest, tmp_path: Path, registry: Registry, auth_registry: Registry
) -> Iterator[Callable[..., Crishim]]:
    """Start crishim daemons; by default trusting both test registries over plain HTTP."""
    daemons: list[Crishim] = []

    def start(
        *, trusted_hosts: list[str] | None = None, auths: dict[str, tuple[str, str]] | None = None,
        auth_fields: dict[str, dict[str, str]] | None = None,
    ) -> Crishim:
        hosts = [registry.host, auth_registry.host] if trusted_hosts is None else trusted_hosts
        options = CrishimOptions(hosts, auths or {}, auth_fields or {})
        daemon = Crishim(tmp_path / f"crishim-{len(daemons)}", options)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        if phase_failed(request):
            print(f"\n--- crishim log tail ({daemon.log_path}) ---\n{daemon.log_tail()}")
        daemon.cleanup()


@pytest.fixture
def crishim(crishim_factory: Callable[..., Crishim]) -> Crishim:
    return crishim_factory()
