"""What the overlayfs and native drivers share: metadata, folder lifecycle, usage.

Folders are built under ``snapshots/new-<random>`` and renamed to
``snapshots/<id>`` inside the metadata transaction, so a crash never leaves a
half-made snapshot visible; removal commits the deletion of the record first
and removes the folder after. ``cleanup`` sweeps whatever a crash left between the two.

With a writable root, containers' writable layers (Active snapshots not being unpacked) are made in its
``snapshots/`` instead, upper and work folders together as overlayfs needs them on one filesystem; their
lower layers stay in the root's. A snapshot's folder is where its id is found, the writable root first:
ids are never reused, so the two never disagree. The root keeps a link to the writable root
(``writable-layers``), so layers made there are found again when the setting is dropped (new ones are then
made in the root) and by ``crishim check``. A writable layer committed is copied into the root, whose
snapshots are all the image layers, and renamed there in the commit's transaction.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Self

from errdefs import InvalidArgument, NotFound, Unavailable
from snapshotters.filters import matches
from snapshotters.snapshotter import LABEL_LAYER_OF, Info, Kind, Mount, Snapshotter, Usage
from snapshotters.storage import MetaStore, SnapshotRecord

__all__ = ["WRITABLE_LINK", "LocalSnapshotter", "disk_usage", "writable_snapshots"]

WRITABLE_LINK = "writable-layers"


class LocalSnapshotter(Snapshotter):
    def __init__(self, root: Path, writable_root: Path | None = None) -> None:
        self._root = root
        self.snapshots_dir = root / "snapshots"
        self._writable_root = writable_root
        self._writable_dir: Path | None = None
        self._store = MetaStore(root / "metadata.db")

    def open(self) -> Self:
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        self._writable_dir = _link_writable_root(self._root, self._writable_root)
        self._store.open()
        self.cleanup()
        return self

    @property
    def root(self) -> str:
        return str(self._root)

    @property
    def writable_root(self) -> str:
        return str(self._writable_root or self._root)

    def location(self, key: str) -> str:
        with self._store.read() as tx:
            record = tx.get(key)
        return self.writable_root if self._dir(record.id).parent == self._writable_dir else self.root

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
            record = tx.get(key)
            return self._mounts(record, tx.parent_ids(record.info.parent))

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None, *, durable: bool = True) -> None:
        with self._store.read() as tx:
            record = tx.get(key)
        folder = self._dir(record.id)
        if folder.parent != self.snapshots_dir:
            self._commit_writable_layer(name, key, labels, record.id, folder, durable)
            return
        if durable:
            # A committed snapshot must survive a power loss: its data reaches the disk before its record says so.
            _syncfs(self._fs(record.id))
        with self._store.transaction(durable=durable) as tx:
            tx.commit(name, key, disk_usage(self._fs(record.id)), labels)

    def _commit_writable_layer(self, name: str, key: str, labels: Mapping[str, str] | None, sid: int,
                               folder: Path, durable: bool) -> None:
        """Commit a snapshot of the writable root: a copy goes into the root, where committed snapshots are,
        and replaces it there in the commit's transaction (its id, hence its children's lowerdirs, stay)."""
        with self._store.transaction():
            staging = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
        try:
            copy_tree(folder, staging)
            if durable:
                _syncfs(staging)
            with self._store.transaction() as tx:
                if tx.get(key).id != sid:
                    raise NotFound(f"snapshot {key!r} was replaced while it was being committed")
                doomed = folder.parent / f"rm-{sid}"
                os.rename(folder, doomed)
                try:
                    os.rename(staging, self._image_dir(sid))
                    tx.commit(name, key, disk_usage(self._fs(sid)), labels)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(self._image_dir(sid), staging)
                    os.rename(doomed, folder)
                    raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(doomed, ignore_errors=True)

    def sync(self) -> None:
        _syncfs(self.snapshots_dir)

    def remove(self, key: str) -> None:
        # The record goes first and its folder after, so a kill -9 in between leaves a folder no record
        # owns (cleanup() sweeps it; ids are never reused) rather than a record without its folder. A
        # folder already gone, from a crash of an older version, does not stop the removal.
        with self._store.transaction() as tx:
            record = tx.remove(key)
        folder = self._dir(record.id)
        doomed = folder.parent / f"rm-{record.id}"
        try:
            os.rename(folder, doomed)
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
        """Remove folders no record owns: leftovers of a crash mid-create, mid-commit or mid-remove."""
        with self._store.transaction() as tx:
            live = {str(i) for i in tx.ids()}
            for folder in (self.snapshots_dir, self._writable_dir):
                for entry in folder.iterdir() if folder is not None and folder.is_dir() else ():
                    if entry.name not in live:
                        shutil.rmtree(entry, ignore_errors=True)

    # Driver hooks.
    def _populate(self, path: Path, kind: Kind, parent: SnapshotRecord | None) -> None:
        """Fill a new snapshot folder before it is published."""
        raise NotImplementedError

    def _mounts(self, record: SnapshotRecord, parents: tuple[int, ...]) -> list[Mount]:
        """The mounts of ``record``, whose committed ancestors have the folder ids ``parents`` (nearest first)."""
        raise NotImplementedError

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        labels = labels or {}
        writable = kind == Kind.ACTIVE and LABEL_LAYER_OF not in labels and self._writable_root is not None
        folder = self._writable_dir if writable and self._writable_dir is not None else self.snapshots_dir
        # The staging folder is made under the metadata lock, so a concurrent cleanup() cannot take it
        # for a crash leftover. A layer's snapshot being unpacked need not wait for the disk: a crash
        # before its commit makes it a leftover to remove, whether its record survived or not.
        with self._store.transaction(durable=LABEL_LAYER_OF not in labels) as tx:
            staging = Path(tempfile.mkdtemp(prefix="new-", dir=folder))
            try:
                parent_record = tx.get(parent) if parent else None
                record = tx.create(kind, key, parent, labels)
                self._populate(staging, kind, parent_record)
                os.rename(staging, folder / str(record.id))
                return self._mounts(record, tx.parent_ids(parent))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

    def _dir(self, sid: int) -> Path:
        if self._writable_dir is not None:
            writable = self._writable_dir / str(sid)
            if os.path.lexists(writable):
                return writable
        return self._image_dir(sid)

    def _image_dir(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid)

    def _fs(self, sid: int) -> Path:
        return self._dir(sid) / "fs"


def writable_snapshots(root: Path) -> Path | None:
    """The folder of writable layers a snapshotter root links to, if it has one."""
    link = root / WRITABLE_LINK
    return Path(os.readlink(link)) / "snapshots" if link.is_symlink() else None


def _link_writable_root(root: Path, writable_root: Path | None) -> Path | None:
    """Point the root's link at ``writable_root`` (kept as it is without one); the writable snapshots folder."""
    if writable_root is not None:
        (writable_root / "snapshots").mkdir(parents=True, exist_ok=True)
        link = root / WRITABLE_LINK
        if not link.is_symlink() or Path(os.readlink(link)) != writable_root:
            fresh = root / f".{WRITABLE_LINK}-{os.getpid()}"
            fresh.unlink(missing_ok=True)
            fresh.symlink_to(writable_root)
            os.rename(fresh, link)
    return writable_snapshots(root)


def copy_tree(source: Path, target: Path) -> None:
    """``source``'s contents into the folder ``target``, alike: cp -a keeps owners, modes, times, xattrs (the
    overlay's opaque folders), hard links, devices (its whiteouts) and fifos; reflinks where it can."""
    result = subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(target)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable(f"copying {source}: {result.stderr.strip()}")


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
