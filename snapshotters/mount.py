"""Mounting what a snapshotter returns onto a target folder.

The kernel takes one page of mount options, so an overlay with many layers is
mounted with its lowerdirs relative to their common folder, from inside it (as
containerd does).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import resource
import subprocess
from collections.abc import Sequence
from pathlib import Path

from errdefs import FailedPrecondition, Unavailable
from snapshotters.snapshotter import Mount

__all__ = ["compact_lowerdirs", "mount_all", "unmount", "unmount_under"]

_PAGE = resource.getpagesize()
_MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    for m in mounts:
        _mount(m, target)


def unmount(target: Path, detach: bool = False) -> None:
    """Idempotent: a target that is gone (a state dir lost at reboot) or not mounted is fine.

    umount2(2) directly, so "not mounted" is the kernel's EINVAL, not a phrase in umount's (translated)
    message that a path could contain too.
    """
    if _LIBC.umount2(os.fsencode(target), _MNT_DETACH if detach else 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point; gone
        return
    raise Unavailable(f"unmount {target}: {os.strerror(err)}")


def unmount_under(folder: Path) -> None:
    """Detach every mount at or below ``folder``, deepest first, so removing the folder never reaches into
    what was mounted there."""
    prefix = os.path.realpath(folder)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        unmount(Path(point), detach=True)


def _mount(m: Mount, target: Path) -> None:
    options, cwd = list(m.options), None
    if len(",".join(options)) >= _PAGE - 512:
        options, cwd = compact_lowerdirs(options)
    args = ["mount", "-t", m.type] if m.type != "bind" else ["mount"]
    args += ["-o", ",".join(options), m.source, str(target)]
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise FailedPrecondition(f"mount {m.type} on {target}: {result.stderr.strip()}")


def compact_lowerdirs(options: list[str]) -> tuple[list[str], str]:
    """Rewrite ``lowerdir=`` relative to the folder all its entries share."""
    index = next(i for i, o in enumerate(options) if o.startswith("lowerdir="))
    dirs = options[index].removeprefix("lowerdir=").split(":")
    common = os.path.commonpath(dirs)
    if common in dirs:
        common = os.path.dirname(common)
    relative = [os.path.relpath(d, common) for d in dirs]
    compacted = [*options[:index], "lowerdir=" + ":".join(relative), *options[index + 1:]]
    if len(",".join(compacted)) >= _PAGE:
        raise FailedPrecondition(f"overlay with {len(dirs)} layers: mount options longer than a page")
    return compacted, common
