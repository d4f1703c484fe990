"""The native driver: every snapshot a full copy of its parent; works on any filesystem."""

from __future__ import annotations

from pathlib import Path

from snapshotters.local import LocalSnapshotter, copy_tree
from snapshotters.snapshotter import Kind, Mount
from snapshotters.storage import SnapshotRecord

__all__ = ["NativeSnapshotter"]


class NativeSnapshotter(LocalSnapshotter):
    whiteouts = "delete"

    def _fs(self, sid: int) -> Path:
        return self._dir(sid)  # no fs/ subfolder: containerd's native layout

    def _populate(self, path: Path, kind: Kind, parent: SnapshotRecord | None) -> None:
        path.chmod(0o755)
        if parent is not None:
            copy_tree(self._fs(parent.id), path)

    def _mounts(self, record: SnapshotRecord, parents: tuple[int, ...]) -> list[Mount]:
        flag = "ro" if record.info.kind == Kind.VIEW else "rw"
        return [Mount("bind", str(self._fs(record.id)), (flag, "rbind"))]
