"""The overlayfs driver: each snapshot a folder, mounted as containerd's overlay snapshotter does.

A lone layer (no parents) is a bind mount; otherwise ``overlay`` with
``lowerdir`` listing the parents nearest first, plus ``upperdir`` and
``workdir`` for an Active snapshot, and ``index=off`` where the kernel has
that parameter. An Active snapshot's ``fs`` (upper) and ``work`` are one folder's, so with a writable root
both are on its filesystem, as overlayfs requires; the lowerdirs, committed layers, stay in the root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from snapshotters.local import LocalSnapshotter
from snapshotters.snapshotter import Kind, Mount
from snapshotters.storage import SnapshotRecord

__all__ = ["OverlaySnapshotter", "kernel_has_index_param"]

_INDEX_PARAM = Path("/sys/module/overlay/parameters/index")


def kernel_has_index_param() -> bool:
    return _INDEX_PARAM.exists()


class OverlaySnapshotter(LocalSnapshotter):
    whiteouts = "overlay"

    can_rebase = True
    _index_off = False

    def open(self) -> Self:
        self._index_off = kernel_has_index_param()
        super().open()
        return self

    def rebase(self, key: str, parent: str) -> None:
        # An Active snapshot being unpacked: a crash before its commit makes it a leftover either way.
        with self._store.transaction(durable=False) as tx:
            tx.rebase(key, parent)

    def lower_dirs(self, key: str) -> list[str]:
        with self._store.read() as tx:
            parent_ids = tx.parent_ids(tx.get(key).info.parent)
        return [str(self._fs(p)) for p in parent_ids]

    def _populate(self, path: Path, kind: Kind, parent: SnapshotRecord | None) -> None:
        (path / "fs").mkdir(mode=0o755)
        if kind == Kind.ACTIVE:
            (path / "work").mkdir(mode=0o711)

    def _mounts(self, record: SnapshotRecord, parents: tuple[int, ...]) -> list[Mount]:
        kind = record.info.kind
        if not parents:
            flag = "ro" if kind == Kind.VIEW else "rw"
            return [Mount("bind", str(self._fs(record.id)), (flag, "rbind"))]
        if kind != Kind.ACTIVE and len(parents) == 1:
            return [Mount("bind", str(self._fs(parents[0])), ("ro", "rbind"))]
        options = ["index=off"] if self._index_off else []
        if kind == Kind.ACTIVE:
            options += [f"workdir={self._dir(record.id) / 'work'}", f"upperdir={self._fs(record.id)}"]
        options.append("lowerdir=" + ":".join(str(self._fs(p)) for p in parents))
        return [Mount("overlay", "overlay", tuple(options))]
