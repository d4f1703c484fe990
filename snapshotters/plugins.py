"""Which of containerd's snapshotter plugins this host can run, found by probing it.

containerd 1.6 decides at start-up, plugin by plugin, and ``ctr plugin ls``
shows the outcome: ``ok``, ``skip`` (the host lacks what the plugin needs; the
reason ends in ``skip plugin``, containerd's ``ErrSkipPlugin``) or ``error``.
Each probe here asks the host the question the plugin asks:

- ``overlayfs``: ``overlay`` in /proc/filesystems and a real overlay mount with
  two lower layers in a temporary folder under the plugin's root;
- ``btrfs`` / ``zfs``: the filesystem under the plugin's root is btrfs / zfs;
- ``aufs``: ``aufs`` in /proc/filesystems;
- ``devmapper`` / ``blockfile``: only when configured (crishim has no setting
  for them, so an error and a skip, as containerd shows when unconfigured);
- ``native``: always.

A plugin the host could run but crishim has no driver for (``DRIVERS``) is
reported as an error saying so, never ``ok``.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from snapshotters.registry import DRIVERS, PLUGIN_TYPE, snapshotter_root

__all__ = [
    "PLUGIN_IDS",
    "PLUGIN_TYPE",
    "SKIP_PLUGIN",
    "Host",
    "LiveHost",
    "Probe",
    "Status",
    "probe_all",
]

# containerd's ErrSkipPlugin text: ctr prints "skip" when an init error contains it.
SKIP_PLUGIN = "skip plugin"


class Status(enum.StrEnum):
    OK = "ok"
    SKIP = "skip"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Probe:
    status: Status
    reason: str = ""  # empty when ok


class Host(Protocol):
    """What the probes look at; ``LiveHost`` reads this machine."""

    def filesystems(self) -> frozenset[str]:
        """Filesystem types the kernel supports (/proc/filesystems)."""
        ...

    def fs_type(self, path: Path) -> str:
        """The type of the filesystem ``path`` (or its nearest existing parent) is on."""
        ...

    def overlay_mount_error(self, directory: Path) -> str:
        """Try an overlay mount inside ``directory``: "" if it works, else why not."""
        ...


def _ok() -> Probe:
    return Probe(Status.OK)


def _skip(reason: str) -> Probe:
    return Probe(Status.SKIP, f"{reason}: {SKIP_PLUGIN}")


def probe_aufs(host: Host, root: Path) -> Probe:
    if "aufs" not in host.filesystems():
        return _skip("aufs is not supported")
    return _ok()


def probe_btrfs(host: Host, root: Path) -> Probe:
    fs_type = host.fs_type(root)
    if fs_type != "btrfs":
        return _skip(f"path {root} ({fs_type}) must be a btrfs filesystem to be used with the btrfs snapshotter")
    return _ok()


def probe_blockfile(host: Host, root: Path, configured: bool = False) -> Probe:
    return _ok() if configured else _skip("no scratch file provided")


def probe_devmapper(host: Host, root: Path, configured: bool = False) -> Probe:
    return _ok() if configured else Probe(Status.ERROR, "devmapper not configured")


def probe_native(host: Host, root: Path) -> Probe:
    return _ok()


def probe_overlayfs(host: Host, root: Path) -> Probe:
    if "overlay" not in host.filesystems():
        return _skip("overlay is not in /proc/filesystems")
    error = host.overlay_mount_error(root)
    if error:
        return _skip(f"failed to mount overlay: {error}")
    return _ok()


def probe_zfs(host: Host, root: Path) -> Probe:
    if host.fs_type(root) != "zfs":
        return _skip(f"path {root} must be a zfs filesystem to be used with the zfs snapshotter")
    return _ok()


# In the order containerd 1.6 lists them (blockfile arrived in later containerd releases).
PROBES: Mapping[str, Callable[[Host, Path], Probe]] = {
    "aufs": probe_aufs,
    "btrfs": probe_btrfs,
    "blockfile": probe_blockfile,
    "devmapper": probe_devmapper,
    "native": probe_native,
    "overlayfs": probe_overlayfs,
    "zfs": probe_zfs,
}
PLUGIN_IDS = tuple(PROBES)


def probe_all(root: Path, host: Host | None = None) -> dict[str, Probe]:
    """Each plugin's outcome, probing under ``<root>/io.containerd.snapshotter.v1.<id>``."""
    host = host if host is not None else LiveHost()
    results = {}
    for plugin_id, probe in PROBES.items():
        result = probe(host, snapshotter_root(root, plugin_id))
        if result.status is Status.OK and plugin_id not in DRIVERS:
            result = Probe(Status.ERROR, f"this host supports {plugin_id} but crishim has no {plugin_id} driver")
        results[plugin_id] = result
    return results


class LiveHost:
    """This machine, as /proc and real mounts show it."""

    def filesystems(self) -> frozenset[str]:
        try:
            lines = Path("/proc/filesystems").read_text().splitlines()
        except OSError:
            return frozenset()
        return frozenset(line.split()[-1] for line in lines if line.strip())

    def fs_type(self, path: Path) -> str:
        target = _existing(path)
        best, best_type = "", "unknown"
        for mount_point, fs_type in _mounts():
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, best_type = mount_point, fs_type
        return best_type

    def overlay_mount_error(self, directory: Path) -> str:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = Path(tempfile.mkdtemp(prefix="overlay-check-", dir=directory))
        except OSError as exc:
            return f"cannot make a test folder in {directory}: {exc.strerror}"
        try:
            return _try_overlay(probe)
        finally:
            shutil.rmtree(probe, ignore_errors=True)


def _try_overlay(probe: Path) -> str:
    for name in ("lower1", "lower2", "upper", "work", "merged"):
        (probe / name).mkdir()
    options = (f"lowerdir={probe / 'lower2'}:{probe / 'lower1'},upperdir={probe / 'upper'},"
               f"workdir={probe / 'work'}")
    try:
        mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(probe / "merged")],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if mounted.returncode != 0:
        return mounted.stderr.strip() or f"mount exited with {mounted.returncode}"
    subprocess.run(["umount", str(probe / "merged")], capture_output=True, timeout=30)
    return ""


def _existing(path: Path) -> str:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return os.path.realpath(current)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount, from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) >= 5 and rest:
            mounts.append((_unescape(parts[4]), rest.split()[0]))
    return mounts


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
