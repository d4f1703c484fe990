"""The snapshotter conformance suite, run against every driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from snapshotters import NativeSnapshotter, OverlaySnapshotter, Snapshotter
from snapshotters.testsuite import CHECKS, Check
from tests.support.tools import require_root

DRIVERS: dict[str, Callable[[Path], Snapshotter]] = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


@pytest.fixture(params=sorted(DRIVERS))
def snapshotter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    require_root("mounting snapshots")
    sn = DRIVERS[request.param](tmp_path / "root")
    yield sn
    sn.close()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_conformance(snapshotter: Snapshotter, check: str, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run: Check = CHECKS[check]
    run(snapshotter, scratch)
