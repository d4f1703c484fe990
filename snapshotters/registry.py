"""The snapshotters crishim runs, each in its plugin-named folder under the root (as containerd)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from snapshotters.native import NativeSnapshotter
from snapshotters.overlay import OverlaySnapshotter
from snapshotters.snapshotter import Snapshotter

__all__ = ["DRIVERS", "PLUGIN_TYPE", "open_snapshotters", "snapshotter_root"]

PLUGIN_TYPE = "io.containerd.snapshotter.v1"
DRIVERS: dict[str, Callable[[Path], Snapshotter]] = {
    "overlayfs": OverlaySnapshotter,
    "native": NativeSnapshotter,
}


def snapshotter_root(root: Path, name: str) -> Path:
    return root / f"{PLUGIN_TYPE}.{name}"


def open_snapshotters(root: Path) -> dict[str, Snapshotter]:
    return {name: driver(snapshotter_root(root, name)) for name, driver in DRIVERS.items()}
