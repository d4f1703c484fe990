"""A disk that can lose power: ext4 on a loop device, and a copy of what the device holds at an instant.

A copy read with O_DIRECT from the loop device holds only what the filesystem has written to its device;
dirty pages still in the page cache, as a power cut would lose them, are not in it. The filesystem is
mounted with a long journal commit interval, and the writer is stopped (SIGSTOP) while the copy is read,
so that nothing reaches the device meanwhile and the copy is one instant's state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.procs import run

SIZE = "384M"


@contextlib.contextmanager
def loop_disk(image: Path, mountpoint: Path, *, fresh: bool) -> Iterator[Path]:
    """``image`` (made and formatted when ``fresh``) as ext4 at ``mountpoint``; detached afterwards."""
    if fresh:
        run("truncate", "-s", SIZE, image)
    device = run("losetup", "--find", "--show", image).stdout.strip()
    try:
        if fresh:
            run("mkfs.ext4", "-q", "-F", device)
        else:
            run("e2fsck", "-p", device, check=False)  # replays the journal, as a boot would
        mountpoint.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "commit=300", device, mountpoint)
        try:
            yield Path(device)
        finally:
            run("umount", mountpoint, check=False)
    finally:
        run("losetup", "-d", device, check=False)


def copy_device(device: Path, target: Path) -> None:
    """What ``device`` holds now, as a file."""
    run("dd", f"if={device}", f"of={target}", "bs=4M", "iflag=direct", "status=none", timeout=300)
