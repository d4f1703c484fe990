"""Applying a layer (an uncompressed tar diff) into a snapshot's directory, as containerd's archive.Apply.

No entry may create or change anything outside ``root``: names are cleaned and
must stay inside, parent directories are resolved component by component with
symlinks interpreted relative to ``root`` (as if chrooted), the entry itself is
never followed, and hard links must point at something already inside.

Deletions are stored the way the snapshotter reads them: ``overlay`` turns
``.wh.X`` into a character device 0/0 named X and ``.wh..wh..opq`` into the
``trusted.overlay.opaque=y`` xattr; ``delete`` removes the files instead.

Where containerd has a rule for an odd input, it is followed so both build the
same tree: the root entry ``./`` is ignored, ``trusted.*`` xattrs from a layer
are not set (they are overlay's own) and other xattrs that cannot be set are
skipped, PAX global headers are ignored, times outside what Go's time can hold
become the epoch, and a directory an entry needs but the layer lacks is made
with the attributes the layers below give it.
"""

from __future__ import annotations

import decimal
import errno
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import structlog

from errdefs import InvalidArgument

__all__ = ["ApplyResult", "apply_tar", "inherit_parent_attributes"]

log = structlog.get_logger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX_PREFIX = "SCHILY.xattr."
_MAX_SYMLINKS = 255
# Go's time.Time as containerd bounds it: anything outside becomes the Unix epoch.
_MAX_TIME_NS = (1 << 63) - 1
_MAX_HEADER = 1 << 20
_HEADER_TYPES = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                           tarfile.SOLARIS_XHDTYPE})


@dataclass(slots=True)
class ApplyResult:
    entries: int = 0
    size: int = 0
    dir_times: list[tuple[str, int]] = field(default_factory=list)  # (name inside the root, mtime ns)
    # Directories an entry needed but the layer lacks, made 0755 while the layers below were unknown.
    implicit_dirs: list[str] = field(default_factory=list)


def apply_tar(stream: BinaryIO, root: Path, whiteouts: str = "overlay",
              parents: Sequence[Path] | None = ()) -> ApplyResult:
    """Extract the tar read from ``stream`` into ``root``; returns what it wrote.

    ``parents`` are the layers below (nearest first), consulted for the
    attributes of directories the layer needs but does not carry. ``None``
    means they are not there yet (layers unpacked side by side): such
    directories are listed in the result, for ``inherit_parent_attributes``
    once the layers below are.
    """
    applier = _Applier(str(root), whiteouts, None if parents is None else [os.path.realpath(p) for p in parents])
    try:
        with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, tarinfo=_BoundedTarInfo) as archive:
            for member in archive:
                applier.apply(member, archive)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"malformed layer: {exc}") from exc
    applier.finish()
    return applier.result


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a long-name or PAX header whole into memory: refuse ones larger than Go's tar allows."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > _MAX_HEADER:
            raise tarfile.HeaderError(f"{self.size}-byte extended header exceeds {_MAX_HEADER} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


class _Applier:
    def __init__(self, root: str, whiteouts: str, parents: list[str] | None) -> None:
        if whiteouts not in ("overlay", "delete"):
            raise ValueError(f"unknown whiteout mode {whiteouts!r}")
        self.root = os.path.realpath(root)
        self.parents = parents
        self.overlay = whiteouts == "overlay"
        self.result = ApplyResult()
        self._written: set[str] = set()
        # Resolved parent directories of this layer, by their name in the tar. A hostile layer routes
        # thousands of entries through a 255-hop symlink chain; resolved once, each entry costs one lookup.
        # Anything removed or replaced may be on a cached path, so removals forget them all.
        self._dirs: dict[str, str] = {}

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        name = _clean(member.name)
        if name == "":
            return  # containerd ignores the root entry: the snapshot's own root keeps its attributes
        parent, base = posixpath.split(name)
        parent_path = self._resolve_dir(parent, member.name, create=True)
        if base == WHITEOUT_OPAQUE:
            self._opaque(parent_path, parent)
        elif base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent_path, base[len(WHITEOUT_PREFIX):], member)
        else:
            self._create(os.path.join(parent_path, base), name, member, archive)
        self.result.entries += 1

    def finish(self) -> None:
        # A directory the layer carries after all keeps its own attributes.
        self.result.implicit_dirs = [d for d in dict.fromkeys(self.result.implicit_dirs) if d not in self._written]
        # Directory times last: creating entries inside a directory changes its mtime. Names are resolved
        # again, inside the root, because a later entry may have replaced a parent with a symlink.
        for name, mtime in reversed(self.result.dir_times):
            path = _resolve_in(self.root, name, name)
            if path is not None and os.path.isdir(path) and not os.path.islink(path):
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def _resolve_dir(self, relative: str, entry: str, create: bool = False) -> str:
        """The real path of directory ``relative`` inside root, symlinks resolved within root.

        With ``create``, missing directories are made as the parent layers have them. Each prefix is
        resolved from the longest one resolved before.
        """
        parts = [c for c in relative.split("/") if c and c != "."]
        known = len(parts)
        while known and "/".join(parts[:known]) not in self._dirs:
            known -= 1
        current = self._dirs["/".join(parts[:known])] if known else self.root
        for i in range(known, len(parts)):
            path = _resolve_in(self.root, parts[i], entry, on_missing=self._make_parent if create else None,
                               start=current)
            if path is None:
                raise InvalidArgument(f"layer entry {entry!r}: parent directory {relative!r} does not exist")
            if not os.path.isdir(path) or os.path.islink(path):
                raise InvalidArgument(f"layer entry {entry!r}: {relative!r} in its path is not a directory")
            current = path
            self._dirs["/".join(parts[: i + 1])] = current
        return current

    def _remove(self, path: str) -> None:
        self._dirs.clear()
        _remove(path)

    def _make_parent(self, path: str) -> None:
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)
        relative = os.path.relpath(path, self.root)
        if self.parents is None:
            self.result.implicit_dirs.append(relative)
        else:
            _inherit(path, relative, self.parents, times=True)

    def _create(self, path: str, name: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        existing = _lstat(path)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            self._remove(path)
        mtime = _mtime_ns(member)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(path, 0o700)
            self.result.dir_times.append((name, mtime))
        elif member.isreg():
            self._write_file(path, member, archive)
        elif member.issym():
            if not member.linkname:
                raise InvalidArgument(f"layer entry {member.name!r}: symbolic link with an empty target")
            os.symlink(member.linkname, path)
        elif member.islnk():
            os.link(self._link_target(member), path, follow_symlinks=False)
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            raise InvalidArgument(f"layer entry {member.name!r}: unsupported type {member.type!r}")
        self._written.add(name)
        # A hard link entry carries attributes too, and they land on the shared inode (as in containerd).
        self._attributes(path, member, _own_pax(member, archive))
        if not member.isdir():
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def _write_file(self, path: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        source = archive.extractfile(member)
        assert source is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        self.result.size += member.size

    def _link_target(self, member: tarfile.TarInfo) -> str:
        name = _clean(member.linkname)
        if not name:
            raise InvalidArgument(f"layer entry {member.name!r}: hard link to the root")
        parent, base = posixpath.split(name)
        target = os.path.join(self._resolve_dir(parent, member.name), base)
        st = _lstat(target)
        if st is None or stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer entry {member.name!r}: hard link target {member.linkname!r} "
                                  "is missing or a directory")
        return target

    def _attributes(self, path: str, member: tarfile.TarInfo, pax: dict[str, str]) -> None:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        for key, value in pax.items():
            if key.startswith(_XATTR_PAX_PREFIX):
                _set_xattr(path, key[len(_XATTR_PAX_PREFIX):], value)
        if not member.issym() and not (member.islnk() and os.path.islink(path)):
            # After chown, which clears setuid and setgid bits.
            os.chmod(path, member.mode & 0o7777)

    def _whiteout(self, parent_path: str, base: str, member: tarfile.TarInfo) -> None:
        if not base or base in (".", "..") or "/" in base:
            raise InvalidArgument(f"layer entry {member.name!r}: invalid whiteout")
        path = os.path.join(parent_path, base)
        if self.overlay:
            if _lstat(path) is not None:
                self._remove(path)
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        elif _lstat(path) is not None:
            self._remove(path)

    def _opaque(self, parent_path: str, parent: str) -> None:
        if self.overlay:
            os.setxattr(parent_path, OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        # Without overlay, an opaque directory keeps only what this layer put in it.
        for entry in os.listdir(parent_path):
            if posixpath.join(parent, entry) not in self._written:
                self._remove(os.path.join(parent_path, entry))


def inherit_parent_attributes(root: Path, implicit_dirs: Sequence[str], parents: Sequence[Path]) -> None:
    """Give directories made without the layers below the attributes those layers have for them."""
    lowers = [os.path.realpath(p) for p in parents]
    real_root = os.path.realpath(root)
    for relative in implicit_dirs:
        path = _resolve_in(real_root, relative, relative)
        if path is not None and os.path.isdir(path) and not os.path.islink(path):
            # Not the times: made before its entries, such a directory's times are those of its last entry.
            _inherit(path, relative, lowers, times=False)


def _inherit(path: str, relative: str, lowers: Sequence[str], times: bool) -> None:
    """As containerd's mkparent: the nearest layer holding the path decides its attributes."""
    for lower in lowers:
        source = _resolve_in(lower, relative, relative)
        st = _lstat(source) if source is not None else None
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            assert source is not None
            _copy_dir_attributes(source, st, path, times)
        return  # a file or a whiteout there: replaced, so nothing is copied


def _resolve_in(root: str, relative: str, entry: str,
                on_missing: Callable[[str], None] | None = None, start: str | None = None) -> str | None:
    """``relative`` inside ``root`` (from ``start``, a resolved folder in it) with symlinks resolved as if
    ``root`` were ``/``; None if missing or if a component on the way is not a directory."""
    current = start or root
    pending = [c for c in relative.split("/") if c and c != "."]
    hops = 0
    while pending:
        component = pending.pop(0)
        if component == "..":
            current = os.path.dirname(current) if current != root else root
            continue
        candidate = os.path.join(current, component)
        st = _lstat(candidate)
        if st is None:
            if on_missing is None:
                return None
            on_missing(candidate)
            st = os.lstat(candidate)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise InvalidArgument(f"layer entry {entry!r}: too many symlinks in its path")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            pending = [c for c in target.split("/") if c and c != "."] + pending
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            return None  # a file on the way: nothing below it, and nothing can be made there
        current = candidate
    return current



def _own_pax(member: tarfile.TarInfo, archive: tarfile.TarFile) -> dict[str, str]:
    """The member's own PAX records: tarfile copies a global header's into every member, containerd ignores them."""
    globals_ = archive.pax_headers
    return {k: v for k, v in member.pax_headers.items() if globals_.get(k) != v}


def _set_xattr(path: str, key: str, value: str) -> None:
    if key.startswith("trusted."):
        return  # administrator attributes (overlay's among them) are never taken from a layer
    try:
        os.setxattr(path, key, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    except OSError as exc:
        # e.g. user.* on a symlink or a fifo, which the kernel refuses; containerd 1.6 goes on without it.
        log.debug("apply.xattr_skipped", path=path, xattr=key, error=exc.strerror)


def _copy_dir_attributes(source: str, st: os.stat_result, path: str, times: bool) -> None:
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(source, follow_symlinks=False):
        if name.startswith("user."):  # containerd copies up only user xattrs
            os.setxattr(path, name, os.getxattr(source, name, follow_symlinks=False), follow_symlinks=False)
    if times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _clean(name: str) -> str:
    """A tar name as a path relative to the root; names that climb out of it are refused."""
    cleaned = posixpath.normpath("/" + name.lstrip("/")).lstrip("/")
    relative = posixpath.normpath(name.lstrip("/"))
    if relative == ".." or relative.startswith("../"):
        raise InvalidArgument(f"layer entry {name!r}: path escapes the snapshot")
    return "" if cleaned in ("", ".") else cleaned


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """Exact nanoseconds (a PAX mtime has more digits than a float keeps), bounded as containerd bounds them."""
    text = member.pax_headers.get("mtime")
    try:
        ns = int(decimal.Decimal(text) * 1_000_000_000) if text else int(member.mtime) * 1_000_000_000
    except (decimal.InvalidOperation, ValueError):
        ns = int(member.mtime * 1_000_000_000)
    return ns if 0 <= ns <= _MAX_TIME_NS else 0


def _lstat(path: str | None) -> os.stat_result | None:
    if path is None:
        return None
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise

