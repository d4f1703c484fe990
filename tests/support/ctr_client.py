"""Debian's ``ctr`` against any socket speaking containerd's API (containerd's, crishim's), and read-only
mounts of the snapshot views it creates.

The mounts are performed here with mount(8), from what ctr prints, so crishim's own mount code plays no part
in what the tests see.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import run
from tests.support.tools import binary

NAMESPACE = "k8s.io"
SNAPSHOTTER = "overlayfs"
PAGE = resource.getpagesize()


@dataclass(frozen=True)
class SnapshotRow:
    key: str
    parent: str
    kind: str


@dataclass(frozen=True)
class MountSpec:
    type: str
    source: str
    options: tuple[str, ...]

    def option(self, name: str) -> str | None:
        prefix = name + "="
        return next((o.removeprefix(prefix) for o in self.options if o.startswith(prefix)), None)


@dataclass(frozen=True)
class Ctr:
    socket: Path
    namespace: str = NAMESPACE
    snapshotter: str = SNAPSHOTTER

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(binary("ctr"), "-a", self.socket, "-n", self.namespace, *args, check=check, timeout=120)

    def out(self, *args: str) -> str:
        return self.run(*args).stdout

    def snapshots(self) -> list[SnapshotRow]:
        """`ctr snapshots ls`: KEY PARENT KIND, PARENT empty for a bottom layer."""
        rows = []
        for line in self.out("snapshots", "--snapshotter", self.snapshotter, "ls").splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                rows.append(SnapshotRow(*parts))
            elif len(parts) == 2:
                rows.append(SnapshotRow(parts[0], "", parts[1]))
        return rows

    def view(self, key: str, parent: str) -> list[MountSpec]:
        text = self.out("snapshots", "--snapshotter", self.snapshotter, "view", "--mounts", key, parent)
        return _parse_mounts_json(text)

    def prepare(self, key: str, parent: str) -> list[MountSpec]:
        text = self.out("snapshots", "--snapshotter", self.snapshotter, "prepare", "--mounts", key, parent)
        return _parse_mounts_json(text)

    def mount_commands(self, target: str, key: str) -> list[str]:
        """`ctr snapshots mounts TARGET KEY`: one `mount -t TYPE SOURCE TARGET -o OPTIONS` line per mount."""
        return self.out("snapshots", "--snapshotter", self.snapshotter, "mounts", target, key).splitlines()

    def remove(self, key: str) -> None:
        self.run("snapshots", "--snapshotter", self.snapshotter, "rm", key, check=False)


def _parse_mounts_json(text: str) -> list[MountSpec]:
    # ctr prints Go's mount.Mount without JSON tags: {"Type", "Source", "Options"}.
    mounts = json.loads(text) or []
    return [MountSpec(m.get("Type") or m.get("type", ""), m.get("Source") or m.get("source", ""),
                      tuple(m.get("Options") or m.get("options") or ())) for m in mounts]


def layer_dirs(mounts: list[MountSpec]) -> list[str]:
    """The snapshot folders a view stacks, bottom layer first."""
    if len(mounts) != 1:
        raise AssertionError(f"expected one mount for a view, got {mounts}")
    m = mounts[0]
    if m.type == "bind":
        return [m.source]
    lower = m.option("lowerdir")
    if m.type != "overlay" or lower is None:
        raise AssertionError(f"unexpected view mount {m}")
    return list(reversed(lower.split(":")))  # lowerdir lists the nearest layer first


def mount_readonly(mounts: list[MountSpec], target: Path) -> None:
    for m in mounts:
        if m.type == "bind":
            options = [o for o in m.options if o not in ("rw", "ro")] + ["ro"]
            run("mount", "-o", ",".join(options), m.source, target)
            continue
        options, cwd = list(m.options), None
        if len(",".join(options)) >= PAGE - 512:
            options, cwd = _relative_lowerdirs(options)
        proc = subprocess.run(["mount", "-r", "-t", m.type, "-o", ",".join(options), m.source, str(target)],
                              capture_output=True, text=True, cwd=cwd, timeout=60, check=False)
        if proc.returncode:
            raise RuntimeError(f"mount {m.type} on {target} failed: {proc.stderr.strip()} (options: {options})")


def _relative_lowerdirs(options: list[str]) -> tuple[list[str], str]:
    """The kernel takes one page of options: give lowerdirs relative to their common folder, mounted from it."""
    index = next(i for i, o in enumerate(options) if o.startswith("lowerdir="))
    dirs = options[index].removeprefix("lowerdir=").split(":")
    common = os.path.commonpath(dirs)
    relative = [os.path.relpath(d, common) for d in dirs]
    return [*options[:index], "lowerdir=" + ":".join(relative), *options[index + 1:]], common


def unmount(target: Path) -> None:
    if run("umount", target, check=False).returncode:
        run("umount", "-l", target, check=False)


@contextmanager
def mounted_view(ctr: Ctr, parent: str, target: Path) -> Iterator[list[MountSpec]]:
    """A View snapshot of ``parent`` mounted read-only on ``target``; unmounted and removed afterwards."""
    key = f"fidelity-view-{secrets.token_hex(6)}"
    target.mkdir(parents=True, exist_ok=True)
    try:
        mounts = ctr.view(key, parent)
        mount_readonly(mounts, target)
        try:
            yield mounts
        finally:
            unmount(target)
    finally:
        ctr.remove(key)
