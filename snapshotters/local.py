"""What the overlayfs and native drivers share: metadata, folder lifecycle, usage.

Folders are built under ``snapshots/new-<random>`` and renamed to
``snapshots/<id>`` inside the metadata transaction, so a crash never leaves a
half-made snapshot visible; removal commits the deletion of the record first
and removes the folder after. ``cleanup`` sweeps whatever a crash left between the two.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from errdefs import InvalidArgument
from snapshotters.filters import matches
from snapshotters.snapshotter import Info, Kind, Mount, Snapshotter, Usage
from snapshotters.storage import MetaStore, SnapshotRecord

__all__ = ["LocalSnapshotter", "disk_usage"]


class LocalSnapshotter(Snapshotter):
    def __init__(self, root: Path) -> None:
        self._root = root
        self.snapshots_dir = root / "snapshots"
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        self._store = MetaStore(root / "metadata.db")
        self.cleanup()

    @property
    def root(self) -> str:
        return str(self._root)

    def close(self) -> None:
        self._store.close()

    def stat(self, key: str) -> Info:
        with self._store.read() as tx:
            return tx.get(key).info

    def update(self, info: Info, fieldpaths: Iterable[str] = ()) -> Info:
        with self._store.transaction() as tx:
            current = tx.get(info.name).info
            labels = _updated_labels(current.labels, info.labels, list(fieldpaths))
            return tx.set_labels(info.name, labels).info

    def usage(self, key: str) -> Usage:
        with self._store.read() as tx:
            record = tx.get(key)
        if record.info.kind == Kind.ACTIVE:
            return disk_usage(self._fs(record.id))
        return record.usage

    def mounts(self, key: str) -> list[Mount]:
        with self._store.read() as tx:
            return self._mounts(tx.get(key))

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None, *, durable: bool = True) -> None:
        with self._store.read() as tx:
            record = tx.get(key)
        if durable:
            # A committed snapshot must survive a power loss: its data reaches the disk before its record says so.
            _syncfs(self._fs(record.id))
        with self._store.transaction() as tx:
            tx.commit(name, key, disk_usage(self._fs(record.id)), labels)

    def sync(self) -> None:
        _syncfs(self.snapshots_dir)

    def remove(self, key: str) -> None:
        # The record goes first and its folder after, so a kill -9 in between leaves a folder no record
        # owns (cleanup() sweeps it; ids are never reused) rather than a record without its folder. A
        # folder already gone, from a crash of an older version, does not stop the removal.
        with self._store.transaction() as tx:
            record = tx.remove(key)
        doomed = self.snapshots_dir / f"rm-{record.id}"
        try:
            os.rename(self._dir(record.id), doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def walk(self, fn: Callable[[Info], None], filters: Iterable[str] = ()) -> None:
        with self._store.read() as tx:
            infos = [r.info for r in tx.all()]
        wanted = list(filters)
        for info in infos:
            if matches(info, wanted):
                fn(info)

    def apply_dir(self, key: str) -> str:
        with self._store.read() as tx:
            record = tx.get(key)
        if record.info.kind != Kind.ACTIVE:
            raise InvalidArgument(f"snapshot {key!r} is {record.info.kind}, not Active")
        return str(self._fs(record.id))

    def lower_dirs(self, key: str) -> list[str]:
        return []

    def cleanup(self) -> None:
        """Remove folders no record owns: leftovers of a crash mid-create or mid-remove."""
        with self._store.transaction() as tx:
            live = {str(i) for i in tx.ids()}
            for entry in self.snapshots_dir.iterdir():
                if entry.name not in live:
                    shutil.rmtree(entry, ignore_errors=True)

    # Driver hooks.
    def _populate(self, path: Path, kind: Kind, parent: SnapshotRecord | None) -> None:
        """Fill a new snapshot folder before it is published."""
        raise NotImplementedError

    def _mounts(self, record: SnapshotRecord) -> list[Mount]:
        raise NotImplementedError

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        # The staging folder is made under the metadata lock, so a concurrent cleanup() cannot take it
        # for a crash leftover.
        with self._store.transaction() as tx:
            staging = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
            try:
                parent_record = tx.get(parent) if parent else None
                record = tx.create(kind, key, parent, labels or {})
                self._populate(staging, kind, parent_record)
                os.rename(staging, self._dir(record.id))
                return self._mounts(record)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

    def _dir(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid)

    def _fs(self, sid: int) -> Path:
        return self._dir(sid) / "fs"


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _LIBC.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


_LIBC = ctypes.CDLL(None, use_errno=True)


def _updated_labels(current: Mapping[str, str], given: Mapping[str, str], fieldpaths: list[str]) -> dict[str, str]:
    if not fieldpaths:
        return dict(given)
    labels = dict(current)
    for path in fieldpaths:
        if path == "labels":
            return dict(given)
        if not path.startswith("labels."):
            raise InvalidArgument(f"cannot update field {path!r} of a snapshot")
        name = path.removeprefix("labels.")
        if name in given:
            labels[name] = given[name]
        else:
            labels.pop(name, None)
    return labels


def disk_usage(path: Path) -> Usage:
    """Bytes and inodes under ``path``, each hard-linked inode counted once (as containerd's fs.DiskUsage)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames, ""]:
            try:
                st = os.lstat(os.path.join(dirpath, name)) if name else os.lstat(dirpath)
            except FileNotFoundError:
                continue  # deleted by the container while we walk
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            size += st.st_blocks * 512
    return Usage(size, len(seen))
