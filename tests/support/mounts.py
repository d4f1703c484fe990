"""Mount helpers: where overlayfs works, and cleaning up mounts a daemon left behind."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.procs import run


def overlay_works(directory: Path) -> bool:
    """Try a real overlay mount: upper dirs on overlayfs (e.g. inside a container) or some FUSE fail."""
    probe = Path(tempfile.mkdtemp(prefix="ovl-probe-", dir=directory))
    try:
        for name in ("lower", "upper", "work", "merged"):
            (probe / name).mkdir()
        options = f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}"
        if run("mount", "-t", "overlay", "overlay", "-o", options, probe / "merged", check=False).returncode:
            return False
        run("umount", probe / "merged")
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def overlay_capable_dir(candidates: list[Path]) -> Path | None:
    for candidate in candidates:
        candidate.mkdir(parents=True, exist_ok=True)
        if overlay_works(candidate):
            return candidate
    return None


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first (the order they must be unmounted in)."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    for point in mounts_under(path):
        if run("umount", point, check=False).returncode:
            run("umount", "-l", point, check=False)  # busy: detach so the tmp dir can still be removed


@contextlib.contextmanager
def tmpfs(target: Path, size_mib: int = 64) -> Iterator[Path]:
    """A filesystem of its own at ``target`` (made if missing) for the block; unmounted and removed after."""
    target.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "crishim-test", target)
    try:
        yield target
    finally:
        unmount_under(target)
        target.rmdir()


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape")
