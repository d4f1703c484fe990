"""The snapshotters crishim runs, each in its plugin-named folder under the root (as containerd)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from snapshotters.native import NativeSnapshotter
from snapshotters.overlay import OverlaySnapshotter
from snapshotters.snapshotter import Snapshotter

__all__ = ["DRIVERS", "PLUGIN_TYPE", "Driver", "snapshotters_under", "snapshotter_root"]

PLUGIN_TYPE = "io.containerd.snapshotter.v1"


class Driver(Protocol):
    def __call__(self, root: Path, writable_root: Path | None = None) -> Snapshotter: ...


DRIVERS: dict[str, Driver] = {
    "overlayfs": OverlaySnapshotter,
    "native": NativeSnapshotter,
}


def snapshotter_root(root: Path, name: str) -> Path:
    return root / f"{PLUGIN_TYPE}.{name}"


def snapshotters_under(root: Path, writable_root: Path | None = None) -> dict[str, Snapshotter]:
    """Every driver on its folder of ``root``, not opened yet; with ``writable_root``, containers' writable
    layers on its own."""
    return {name: driver(snapshotter_root(root, name), snapshotter_root(writable_root, name) if writable_root else None)
            for name, driver in DRIVERS.items()}
