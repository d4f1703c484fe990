"""Without the privileges or the writable store it needs, the daemon says so in words: at start, and to the
client of an RPC the host refused."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Crishim, CrishimOptions, python_executable
from tests.support.images import PushedImage
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.special_images import SpecialImage
from tests.support.tools import binary, require_root

NOBODY = "65534"


def test_not_root_is_one_line_saying_why(tmp_path: Path) -> None:
    require_root("switching to an unprivileged user")
    tmp_path.chmod(0o777)
    proc = subprocess.run(
        [binary("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         python_executable(), "-m", "cri", "serve", "--root", tmp_path / "root", "--state", tmp_path / "state"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("crishim: the daemon must run as root: it mounts"), lines
    assert not (tmp_path / "root").exists() and not (tmp_path / "state").exists()


@pytest.fixture
def without_chown(tmp_path: Path, registry: Registry) -> Iterator[Callable[[], Crishim]]:
    require_root("dropping a capability from root")
    setpriv = binary("setpriv")
    daemons: list[Crishim] = []

    def start() -> Crishim:
        options = CrishimOptions([registry.host], wrapper=[setpriv, "--bounding-set=-chown", "--inh-caps=-chown"])
        daemon = Crishim(tmp_path / "crishim", options)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        daemon.cleanup()


def test_unpack_refused_a_chown_is_permission_denied_with_the_cause(
        without_chown: Callable[[], Crishim], special_images: dict[str, SpecialImage]) -> None:
    daemon = without_chown()
    # A folder in its first layer is owned by uid 1000: setting that owner needs CAP_CHOWN.
    proc = daemon.crictl("pull", special_images["whiteouts"].ref, check=False)
    assert proc.returncode != 0
    assert "code = PermissionDenied" in proc.stderr, proc.stderr
    assert "Operation not permitted" in proc.stderr and "CAP_CHOWN" in proc.stderr, proc.stderr
    assert daemon.images() == []


def test_a_read_only_store_is_a_failed_precondition_with_the_cause(
        crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    require_root("a read-only bind mount")
    snapshots = crishim.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    run(binary("mount"), "--bind", snapshots, snapshots)
    try:
        run(binary("mount"), "-o", "remount,bind,ro", snapshots)
        proc = crishim.crictl("pull", test_images["oci"].ref, check=False)
    finally:
        run(binary("umount"), snapshots)
    assert proc.returncode != 0
    assert "code = FailedPrecondition" in proc.stderr, proc.stderr
    assert "Read-only file system" in proc.stderr and "must be writable" in proc.stderr, proc.stderr
    assert crishim.images() == []
