"""Snapshotters: the snapshot model, its overlayfs and native drivers, and applying layers."""

from snapshotters.apply import apply_tar
from snapshotters.native import NativeSnapshotter
from snapshotters.overlay import OverlaySnapshotter
from snapshotters.snapshotter import Info, Kind, Mount, Snapshotter, Usage

__all__ = ["Info", "Kind", "Mount", "NativeSnapshotter", "OverlaySnapshotter", "Snapshotter", "Usage", "apply_tar"]
