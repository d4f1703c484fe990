"""critest, cri-tools' CRI validation suite, against crishim — and against containerd 1.6 on the same host with
the same images and mirrors.

Every spec this host can run must pass on crishim, and every spec containerd passes here must pass on
crishim too. The images
critest pulls are rebuilt locally (tests/support/critest_images.py) and reached through hosts.toml mirrors for
registry.k8s.io, k8s.gcr.io and gcr.io, so no name critest uses is ever resolved. Each runtime's suite takes
one to three minutes.

CRISHIM_CONFORMANCE_REPORTS names a folder to keep the junit reports in (``make conformance`` sets it and
writes docs/conformance.md from them). CRISHIM_CRITEST_FOCUS, a ginkgo focus regex, runs only the matching
specs: ``CRISHIM_CRITEST_FOCUS='Mount Readonly' pytest tests/e2e/test_critest.py -k every_spec`` (not through
``make conformance``, whose report of a part would replace docs/conformance.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cni_network import PLUGIN_DIR, Network, temporary_network
from tests.support.containerd import start_containerd
from tests.support.critest import CritestRun, critest_binary, run_critest
from tests.support.critest_images import MIRRORED, busybox_images, nginx_images, pause_image, push_images
from tests.support.critest_parts import provide_parts
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.hosts import write_mirror_host
from tests.support.junit import FAILED, PASSED, SpecResult, read_report
from tests.support.layout import Layout
from tests.support.mounts import overlay_capable_dir
from tests.support.registry import Registry
from tests.support.report import say
from tests.support.seed_image import TAG as SEED_TAG
from tests.support.seed_image import SeedImage
from tests.support.tools import require_root

pytestmark = pytest.mark.root
SANDBOX_IMAGE = "registry.k8s.io/pause:3.9"  # containerd's sandbox, one of the images critest pulls anyway
# Other runs on the machine may hold the CNI test lock for their whole life (kubelet tests do); a suite that
# itself takes minutes can wait longer for it than the default.
LOCK_TIMEOUT = 1200.0
FOCUS = os.environ.get("CRISHIM_CRITEST_FOCUS", "")


@pytest.fixture(scope="module")
def critest_registry(request: pytest.FixtureRequest, registry: Registry, seed_image: SeedImage) -> Registry:
    """The test registry, holding every image critest pulls."""
    require_root("critest")
    critest_binary()
    parts = provide_parts()
    images = [*busybox_images(parts), pause_image(parts), *nginx_images(Layout(seed_image.layout), SEED_TAG, parts)]
    push_images(registry, images, lambda line: say(request.config, line))
    return registry


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("CRISHIM_CONFORMANCE_REPORTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("critest-reports")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def on_crishim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               critest_registry: Registry, reports: Path) -> list[SpecResult]:
    workdir = tmp_path_factory.mktemp("critest-crishim")
    with _network(workdir / "cni") as network:
        extra = ["--cni-conf-dir", str(network.conf_dir), "--cni-bin-dir", str(PLUGIN_DIR)]
        daemon = Crishim(workdir / "crishim", CrishimOptions([critest_registry.host], extra_args=extra))
        _mirror(daemon.certs_dir, critest_registry)
        try:
            daemon.start()
            result = _run(request, daemon.socket, reports, "crishim", workdir / "scratch")
        finally:
            daemon.crictl("rmp", "-af", check=False)
            _keep_log(daemon.log_path, reports / "crishim-daemon.log")
            daemon.cleanup()
    return read_report(result.report)


@pytest.fixture(scope="module")
def on_containerd(request: pytest.FixtureRequest, critest_registry: Registry,
                  reports: Path) -> list[SpecResult]:
    with _containerd_workdir() as workdir, _network(workdir / "cni"):
        # start_containerd reads its CNI config from workdir/cni/net.d, where the network writes it.
        oracle = start_containerd(workdir, [critest_registry.host], sandbox_image=SANDBOX_IMAGE)
        try:
            _mirror(oracle.certs_dir, critest_registry)
            result = _run(request, oracle.socket, reports, "containerd", workdir / "scratch")
        finally:
            oracle.crictl_client.run("rmp", "-af", check=False)
            oracle.stop()
            _keep_log(oracle.log_path, reports / "containerd-daemon.log")
    return read_report(result.report)


def test_every_spec_this_host_can_run_passes_on_crishim(on_crishim: list[SpecResult]) -> None:
    if not FOCUS:
        assert sum(spec.status == PASSED for spec in on_crishim) > len(on_crishim) // 2, "critest barely ran"
    failed = [spec for spec in on_crishim if spec.status == FAILED]
    assert not failed, _describe("failed on crishim", failed)


def test_crishim_passes_every_spec_containerd_passes(on_crishim: list[SpecResult],
                                                     on_containerd: list[SpecResult]) -> None:
    crishim = {spec.name: spec for spec in on_crishim}
    behind = [crishim[spec.name] for spec in on_containerd if spec.status == PASSED
              and spec.name in crishim and crishim[spec.name].status != PASSED]
    missing = [spec.name for spec in on_containerd if spec.name not in crishim]
    assert not missing, f"specs in containerd's report but not crishim's: {missing}"
    assert not behind, _describe("pass on containerd 1.6 but not on crishim", behind)


def _network(workdir: Path) -> contextlib.AbstractContextManager[Network]:
    return temporary_network(workdir, hold_lock=False, lock_timeout=LOCK_TIMEOUT)


def _keep_log(log: Path, kept: Path) -> None:
    # The daemon's own log, beside critest's, for reading a failure after the daemon's folder is gone.
    if log.is_file():
        shutil.copyfile(log, kept)


def _mirror(certs_dir: Path, registry: Registry) -> None:
    for upstream in MIRRORED:
        write_mirror_host(certs_dir, upstream, registry.host)


@contextlib.contextmanager
def _containerd_workdir() -> Iterator[Path]:
    # containerd's ttrpc socket path must stay under 104 bytes, which pytest's tmp paths can exceed.
    base = overlay_capable_dir([Path(tempfile.gettempdir()), Path("/var/tmp")])
    if base is None:
        pytest.skip("no directory where an overlay mount works, so containerd's overlayfs snapshotter cannot")
    workdir = Path(tempfile.mkdtemp(prefix="ctrd-critest-", dir=base))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(request: pytest.FixtureRequest, socket: Path, reports: Path, name: str, scratch: Path) -> CritestRun:
    say(request.config, f"critest: running against {name}; report {reports / name}.xml")
    result = run_critest(socket, reports, name, scratch, focus=FOCUS)
    specs = read_report(result.report)
    counts = ", ".join(f"{sum(s.status == status for s in specs)} {status}" for status in ("passed", "failed",
                                                                                          "skipped"))
    say(request.config, f"critest on {name}: {counts} in {result.seconds:.0f} s; log {result.log}")
    return result


def _describe(what: str, specs: list[SpecResult]) -> str:
    lines = [f"{len(specs)} critest specs {what}:"]
    lines += [f"  - {spec.name}: {spec.message.splitlines()[0] if spec.message else spec.status}" for spec in specs]
    return "\n".join(lines)
