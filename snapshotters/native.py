"""The native driver: every snapshot a full copy of its parent; works on any filesystem."""

from __future__ import annotations

import subprocess
from pathlib import Path

from errdefs import Unavailable
from snapshotters.local import LocalSnapshotter
from snapshotters.snapshotter import Kind, Mount
from snapshotters.storage import SnapshotRecord

__all__ = ["NativeSnapshotter"]


class NativeSnapshotter(LocalSnapshotter):
    whiteouts = "delete"

    def _fs(self, sid: int) -> Path:
        return self._dir(sid)  # no fs/ subfolder: containerd's native layout

    def _populate(self, path: Path, kind: Kind, parent: SnapshotRecord | None) -> None:
        path.chmod(0o755)
        if parent is None:
            return
        # cp -a keeps owners, modes, times, xattrs, hard links, devices and fifos; reflinks where it can.
        result = subprocess.run(["cp", "-a", "--reflink=auto", f"{self._fs(parent.id)}/.", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise Unavailable(f"copying snapshot {parent.info.name!r}: {result.stderr.strip()}")

    def _mounts(self, record: SnapshotRecord) -> list[Mount]:
        flag = "ro" if record.info.kind == Kind.VIEW else "rw"
        return [Mount("bind", str(self._fs(record.id)), (flag, "rbind"))]
