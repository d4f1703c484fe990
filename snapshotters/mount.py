"""Mounting what a snapshotter returns onto a target folder.

The kernel takes one page of mount options, so an overlay with many layers is
mounted with its lowerdirs relative to their common folder, from inside it (as
containerd does).
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Sequence
from pathlib import Path

from errdefs import FailedPrecondition, Unavailable
from snapshotters.snapshotter import Mount

__all__ = ["compact_lowerdirs", "mount_all", "unmount"]

_PAGE = resource.getpagesize()


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    for m in mounts:
        _mount(m, target)


def unmount(target: Path, detach: bool = False) -> None:
    """Idempotent: a target that is gone (a state dir lost at reboot) or not mounted is fine."""
    if not target.exists():
        return
    args = ["umount", *(["--lazy"] if detach else []), str(target)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0 and "not mounted" not in result.stderr:
        raise Unavailable(f"unmount {target}: {result.stderr.strip()}")


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
