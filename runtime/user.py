"""Resolve the user a container runs as from its image's /etc/passwd and /etc/group.

The rules are containerd 1.6 CRI's:

- The CRI user (``run_as_username`` or ``run_as_user``, with ``run_as_group``) overrides the image's ``User``.
- ``name`` must have a passwd entry; a numeric ``uid`` need not (its gid is then 0); otherwise the primary gid
  comes from the passwd entry. ``user:group`` takes the gid from the group part (a number, or a name that must
  be in /etc/group).
- Additional gids are the primary gid, the groups listing the *CRI* user as a member (``run_as_username``, else
  the passwd name of ``run_as_user``, which is 0 when unset) and the CRI ``supplemental_groups``, deduplicated
  and sorted. With ``supplemental_groups_policy`` Strict (KEP-3619) the image's /etc/group is not consulted:
  only the primary gid and the CRI's groups.

Both files are read with their paths resolved inside the rootfs, so an image's symlink (``/etc/passwd ->
/host/etc/passwd`` or ``../../..``) can never make crishim read a file of the host.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import errdefs
from cri.api.runtime.v1 import api_pb2

__all__ = [
    "GroupEntry",
    "PasswdEntry",
    "ResolvedUser",
    "cri_user_string",
    "read_group",
    "read_passwd",
    "resolve_in_root",
    "resolve_user",
]

# runc accepts ids up to MaxInt32 (containerd applies the same bound when parsing a user string).
MAX_ID = 2**31 - 1
# A uint32 on the wire: the kernel's gid_t.
MAX_GID = 2**32 - 1
# The same bound as the kernel's and continuity's symlink resolution, so a link loop fails instead of spinning.
MAX_SYMLINKS = 255
# /etc/passwd and /etc/group of real images are a few KiB; the cap keeps a hostile image from exhausting memory.
MAX_FILE_SIZE = 16 * 1024 * 1024

_DECIMAL = re.compile(r"[+-]?[0-9]+")

T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedUser:
    """The identity for the OCI spec's ``process.user``."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    username: str = ""  # the passwd name of uid, "" when the image has none


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str = ""


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


def resolve_user(
    rootfs: str | os.PathLike[str],
    image_user: str = "",
    security_context: api_pb2.LinuxContainerSecurityContext | None = None,
) -> ResolvedUser:
    """The uid, gid and additional gids the container's process gets; errdefs.InvalidArgument when unresolvable."""
    sc = security_context if security_context is not None else api_pb2.LinuxContainerSecurityContext()
    root = Path(rootfs)
    files = _ImageFiles(root)

    userstr = cri_user_string(sc) or image_user
    uid, gid = _parse_user_string(userstr, files) if userstr else (0, 0)

    supplemental = _check_gids(sc.supplemental_groups)
    strict = sc.supplemental_groups_policy == api_pb2.SupplementalGroupsPolicy.Strict
    member_of = [] if strict else _member_gids(_group_lookup_user(sc), files)
    additional = tuple(sorted({gid, *member_of, *supplemental}))
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, username=_name_of(uid, files))


def cri_user_string(sc: api_pb2.LinuxContainerSecurityContext) -> str:
    """The ``user[:group]`` string the CRI security context asks for, "" when it asks for none."""
    user = str(sc.run_as_user.value) if sc.HasField("run_as_user") else ""
    if sc.run_as_username:
        user = sc.run_as_username
    group = str(sc.run_as_group.value) if sc.HasField("run_as_group") else ""
    if not user:
        if group:
            raise errdefs.InvalidArgument(f"user group {group!r} is specified without user")
        return ""
    return f"{user}:{group}" if group else user


def read_passwd(rootfs: str | os.PathLike[str]) -> list[PasswdEntry] | None:
    """The rootfs's /etc/passwd entries, None when the file does not exist."""
    text = _read_in_root(Path(rootfs), "/etc/passwd")
    return None if text is None else parse_passwd(text)


def read_group(rootfs: str | os.PathLike[str]) -> list[GroupEntry] | None:
    """The rootfs's /etc/group entries, None when the file does not exist."""
    text = _read_in_root(Path(rootfs), "/etc/group")
    return None if text is None else parse_group(text)


def parse_passwd(text: str) -> list[PasswdEntry]:
    # name:password:UID:GID:GECOS:directory:shell; malformed numbers count as 0, as in runc's parser,
    # because real images ship such lines and the other entries must still resolve.
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        fields = line.split(":")
        fields += [""] * (6 - len(fields))
        entries.append(PasswdEntry(fields[0], _atoi(fields[2]) or 0, _atoi(fields[3]) or 0, fields[5]))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    # group_name:password:GID:user_list; comments are allowed here (glibc's rule).
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (4 - len(fields))
        members = tuple(fields[3].split(",")) if fields[3] else ()
        entries.append(GroupEntry(fields[0], _atoi(fields[2]) or 0, members))
    return entries


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` as seen from inside ``root``: symlinks are followed with ``root`` as "/" and ".." stops there.

    The result has no symlink components left (at the time of the call); components that do not exist are kept
    as they are, so opening the result fails with ENOENT.
    """
    pending = [part for part in path.split("/") if part]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            mode = candidate.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            return root.joinpath(*resolved, part, *pending)
        if not stat.S_ISLNK(mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise errdefs.InvalidArgument(f"too many levels of symbolic links resolving {path!r} in the rootfs")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending = [p for p in target.split("/") if p] + pending
    return root.joinpath(*resolved)


def _read_in_root(root: Path, path: str) -> str | None:
    resolved = resolve_in_root(root, path)
    try:
        # O_NOFOLLOW: resolve_in_root left no link in the path, so a link appearing now is a race to refuse.
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise errdefs.InvalidArgument(f"{path} in the rootfs changed while being read") from exc
        raise errdefs.InvalidArgument(f"cannot open {path} in the rootfs: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        # A FIFO or device in place of the file would block or never end.
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise errdefs.InvalidArgument(f"{path} in the rootfs is not a regular file")
        data = f.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise errdefs.InvalidArgument(f"{path} in the rootfs is larger than {MAX_FILE_SIZE} bytes")
    return data.decode("utf-8", errors="surrogateescape")


class _ImageFiles:
    """Each file read once, and only when a lookup needs it: a numeric uid:gid needs neither."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @functools.cached_property
    def passwd(self) -> list[PasswdEntry] | None:
        return read_passwd(self._root)

    @functools.cached_property
    def groups(self) -> list[GroupEntry] | None:
        return read_group(self._root)


def _parse_user_string(userstr: str, files: _ImageFiles) -> tuple[int, int]:
    parts = userstr.split(":")
    if len(parts) > 2:
        raise errdefs.InvalidArgument(f"invalid user {userstr!r}: expected user, uid, user:group or uid:gid")
    uid = _id(parts[0])
    if len(parts) == 1:
        if uid is not None:
            entry = _first(files.passwd, lambda u: u.uid == uid)
            # A uid the image does not know is fine: it runs with gid 0.
            return uid, entry.gid if entry else 0
        entry = _user_named(parts[0], files)
        return entry.uid, entry.gid
    if uid is None:
        uid = _user_named(parts[0], files).uid
    gid = _id(parts[1])
    if gid is None:
        # An empty group part ("user:") selects no group, leaving gid 0 as containerd does.
        gid = _group_named(parts[1], files).gid if parts[1] else 0
    return uid, gid


def _user_named(name: str, files: _ImageFiles) -> PasswdEntry:
    entries = files.passwd
    if entries is None:
        raise errdefs.InvalidArgument(f"unable to find user {name!r}: the image has no /etc/passwd")
    entry = _first(entries, lambda u: u.name == name)
    if entry is None:
        raise errdefs.InvalidArgument(f"unable to find user {name!r}: no matching entry in the image's /etc/passwd")
    return entry


def _group_named(name: str, files: _ImageFiles) -> GroupEntry:
    entries = files.groups
    if entries is None:
        raise errdefs.InvalidArgument(f"unable to find group {name!r}: the image has no /etc/group")
    entry = _first(entries, lambda g: g.name == name)
    if entry is None:
        raise errdefs.InvalidArgument(f"unable to find group {name!r}: no matching entry in the image's /etc/group")
    return entry


def _group_lookup_user(sc: api_pb2.LinuxContainerSecurityContext) -> str:
    # containerd looks group memberships up for the CRI user only, never the image's: the user name when given,
    # else the uid, which reads as 0 (root) when the request names no user at all.
    if sc.run_as_username:
        return str(sc.run_as_username)
    return str(sc.run_as_user.value)


def _member_gids(userstr: str, files: _ImageFiles) -> list[int]:
    uid = _atoi(userstr)
    if uid is not None:
        entry = _first(files.passwd, lambda u: u.uid == uid)
        if entry is None:
            return []
        username = entry.name
    else:
        username = userstr
    entries = files.groups or []
    # A group named like the user is its primary group, already counted.
    return [g.gid for g in entries if g.name != username and username in g.members]


def _name_of(uid: int, files: _ImageFiles) -> str:
    entry = _first(files.passwd, lambda u: u.uid == uid)
    return entry.name if entry else ""


def _check_gids(gids: Iterable[int]) -> list[int]:
    out = []
    for gid in gids:
        if not 0 <= gid <= MAX_GID:
            raise errdefs.InvalidArgument(f"supplemental group {gid} is out of range")
        out.append(int(gid))
    return out


def _first(entries: list[T] | None, match: Callable[[T], bool]) -> T | None:
    for entry in entries or ():
        if match(entry):
            return entry
    return None


def _atoi(text: str) -> int | None:
    # Go's strconv.Atoi: optional sign, ASCII digits only; Python's int() would also take spaces and "_".
    return int(text) if _DECIMAL.fullmatch(text) else None


def _id(text: str) -> int | None:
    # A part that is not a number in runc's id range is a name.
    value = _atoi(text)
    return value if value is not None and 0 <= value <= MAX_ID else None
