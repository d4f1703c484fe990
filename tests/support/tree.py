"""A full listing of a directory tree, for comparing two unpacked image roots entry by entry.

Every path maps to its type, permission bits (setuid, setgid and sticky included), owner, size and sha256 of
regular files, symlink target, device numbers, xattrs (``security.selinux`` aside: the host labels files) and
the other paths sharing its inode. Modification times are compared too, except those the unpacker's own clock
wrote (a directory it had to make up, or one it changed after setting its time): ``applied_window`` names that
stretch of time, and any time inside it reads as ``APPLIED``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

IGNORED_XATTRS = frozenset({"security.selinux"})
APPLIED = -1  # an mtime the unpacker's clock wrote


@dataclass(frozen=True)
class TreeEntry:
    kind: str  # dir, file, symlink, fifo, char, block, socket
    mode: int  # S_IMODE: permission bits with setuid, setgid and sticky
    uid: int
    gid: int
    mtime_ns: int
    size: int | None = None  # regular files only: directory sizes are the filesystem's business
    sha256: str | None = None
    target: str | None = None  # symlink target
    device: tuple[int, int] | None = None  # char and block devices
    xattrs: tuple[tuple[str, bytes], ...] = ()
    links: tuple[str, ...] = ()  # the other names of this inode in the tree

    def describe(self) -> str:
        parts = [self.kind, f"mode={self.mode:04o}", f"uid={self.uid}", f"gid={self.gid}",
                 "mtime=APPLIED" if self.mtime_ns == APPLIED else f"mtime={self.mtime_ns}"]
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.sha256 is not None:
            parts.append(f"sha256={self.sha256[:12]}")
        if self.target is not None:
            parts.append(f"target={self.target!r}")
        if self.device is not None:
            parts.append(f"device={self.device[0]}:{self.device[1]}")
        if self.xattrs:
            parts.append("xattrs={" + ", ".join(f"{k}={v!r}" for k, v in self.xattrs) + "}")
        if self.links:
            parts.append(f"links={list(self.links)}")
        return " ".join(parts)


Tree = dict[str, TreeEntry]

_KINDS = {
    stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFSOCK: "socket",
}


def list_tree(root: Path, applied_window: tuple[int, int] = (0, -1)) -> Tree:
    """Walk ``root`` without following symlinks; keys are "/"-rooted paths (non-UTF-8 bytes as surrogates)."""
    tree: Tree = {}
    inodes: defaultdict[tuple[int, int], list[str]] = defaultdict(list)
    start, end = applied_window
    base = os.fsencode(root)
    pending = [b""]
    while pending:
        relative = pending.pop()
        path = base + relative if relative else base
        st = os.lstat(path)
        key = "/" + os.fsdecode(relative.lstrip(b"/"))
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), f"unknown-{stat.S_IFMT(st.st_mode):o}")
        mtime = APPLIED if start <= st.st_mtime_ns <= end else st.st_mtime_ns
        entry = TreeEntry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime,
                          xattrs=_xattrs(path))
        if kind == "file":
            entry = replace(entry, size=st.st_size, sha256=_sha256(path))
        elif kind == "symlink":
            entry = replace(entry, target=os.fsdecode(os.readlink(path)))
        elif kind in ("char", "block"):
            entry = replace(entry, device=(os.major(st.st_rdev), os.minor(st.st_rdev)))
        if kind == "dir":
            with os.scandir(path) as children:
                pending.extend(relative + b"/" + child.name for child in children)
        else:
            inodes[(st.st_dev, st.st_ino)].append(key)
        tree[key] = entry
    for group in inodes.values():
        if len(group) > 1:
            for key in group:
                tree[key] = replace(tree[key], links=tuple(sorted(p for p in group if p != key)))
    return tree


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    values = []
    for name in sorted(names):
        if name in IGNORED_XATTRS:
            continue
        values.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(values)


def _sha256(path: bytes) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def tree_differences(actual: Tree, expected: Tree, actual_name: str = "crishim",
                     expected_name: str = "containerd") -> list[str]:
    """One line per differing path, naming each differing field; paths only one side has are listed too."""
    lines = []
    for path in sorted(actual.keys() | expected.keys()):
        mine, theirs = actual.get(path), expected.get(path)
        if mine == theirs:
            continue
        if mine is None or theirs is None:
            present, side = (theirs, expected_name) if mine is None else (mine, actual_name)
            assert present is not None
            lines.append(f"{path!r}: only in {side}: {present.describe()}")
            continue
        changed = [
            f"{fld.name}: {actual_name}={_show(getattr(mine, fld.name), fld.name)} "
            f"{expected_name}={_show(getattr(theirs, fld.name), fld.name)}"
            for fld in fields(TreeEntry) if getattr(mine, fld.name) != getattr(theirs, fld.name)
        ]
        lines.append(f"{path!r}: " + "; ".join(changed))
    return lines


def _show(value: object, name: str) -> str:
    if name == "mode" and isinstance(value, int):
        return f"{value:04o}"
    if name == "mtime_ns" and value == APPLIED:
        return "APPLIED"
    if name == "xattrs" and isinstance(value, tuple):
        return "{" + ", ".join(f"{k}={v!r}" for k, v in value) + "}"
    return repr(value)
