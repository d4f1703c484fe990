"""The snapshotter conformance suite, run against every driver, with its writable layers in the root and on a
filesystem of their own (a tmpfs the test mounts)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from errdefs import Unavailable
from snapshotters import NativeSnapshotter, OverlaySnapshotter, Snapshotter
from snapshotters.mount import unmount
from snapshotters.testsuite import CHECKS, Check
from tests.support.mounts import tmpfs
from tests.support.tools import require_root

DRIVERS: dict[str, Callable[[Path], Snapshotter]] = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


@pytest.fixture(params=[*sorted(DRIVERS), *(f"{name}-split" for name in sorted(DRIVERS))])
def snapshotter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    require_root("mounting snapshots")
    name, split, _ = request.param.partition("-split")
    with contextlib.ExitStack() as stack:
        writable = stack.enter_context(tmpfs(tmp_path / "writable-fs")) / "sn" if split else None
        sn = DRIVERS[name](tmp_path / "root", writable).open()
        stack.callback(sn.close)
        yield sn


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_conformance(snapshotter: Snapshotter, check: str, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run: Check = CHECKS[check]
    run(snapshotter, scratch)


def test_unmount_tells_not_mounted_from_busy_by_errno_not_by_message(tmp_path: Path) -> None:
    require_root("mount")
    target = tmp_path / "not mounted"  # the phrase umount's message uses, here in the path itself
    target.mkdir()
    unmount(target)  # not a mount point: nothing to do
    unmount(tmp_path / "gone")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        with (target / "held").open("w"), pytest.raises(Unavailable, match="busy"):
            unmount(target)
        unmount(target)
        assert str(target) not in Path("/proc/self/mountinfo").read_text().replace("\\040", " ")
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
