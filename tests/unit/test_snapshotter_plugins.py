"""Probing the host for containerd's snapshotter plugins: each probe's logic on made-up hosts, then this one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from snapshotters import plugins
from snapshotters.plugins import SKIP_PLUGIN, LiveHost, Probe, Status, probe_all


@dataclass
class FakeHost:
    filesystem_types: set[str] = field(default_factory=lambda: {"ext4", "overlay"})
    root_type: str = "ext4"
    overlay_error: str = ""
    asked: list[Path] = field(default_factory=list)

    def filesystems(self) -> frozenset[str]:
        return frozenset(self.filesystem_types)

    def fs_type(self, path: Path) -> str:
        self.asked.append(path)
        return self.root_type

    def overlay_mount_error(self, directory: Path) -> str:
        self.asked.append(directory)
        return self.overlay_error


def statuses(results: dict[str, Probe]) -> dict[str, str]:
    return {name: str(result.status) for name, result in results.items()}


def test_a_plain_ext4_host_looks_as_containerd_shows_it(tmp_path: Path) -> None:
    assert statuses(probe_all(tmp_path, FakeHost())) == {
        "aufs": "skip", "btrfs": "skip", "blockfile": "skip", "devmapper": "error",
        "native": "ok", "overlayfs": "ok", "zfs": "skip",
    }


def test_skips_say_skip_plugin_so_ctr_prints_skip(tmp_path: Path) -> None:
    for name, result in probe_all(tmp_path, FakeHost()).items():
        assert (result.status is Status.SKIP) == result.reason.endswith(f": {SKIP_PLUGIN}"), name
        assert (result.status is Status.OK) == (result.reason == ""), name


def test_probes_look_under_each_plugins_own_root(tmp_path: Path) -> None:
    host = FakeHost()
    results = probe_all(tmp_path, host)
    assert tmp_path / "io.containerd.snapshotter.v1.overlayfs" in host.asked
    assert tmp_path / "io.containerd.snapshotter.v1.btrfs" in host.asked
    assert f"path {tmp_path / 'io.containerd.snapshotter.v1.btrfs'} (ext4) must be a btrfs filesystem" in (
        results["btrfs"].reason)
    assert results["devmapper"].reason == "devmapper not configured"


def test_overlayfs_needs_the_module_and_a_working_mount(tmp_path: Path) -> None:
    no_module = probe_all(tmp_path, FakeHost(filesystem_types={"ext4"}))["overlayfs"]
    assert no_module.status is Status.SKIP and "overlay" in no_module.reason
    failing = probe_all(tmp_path, FakeHost(overlay_error="wrong fs type"))["overlayfs"]
    assert failing == Probe(Status.SKIP, f"failed to mount overlay: wrong fs type: {SKIP_PLUGIN}")


@pytest.mark.parametrize("fs_type", ["btrfs", "zfs"])
def test_a_supported_filesystem_without_a_crishim_driver_is_an_error_not_ok(tmp_path: Path, fs_type: str) -> None:
    result = probe_all(tmp_path, FakeHost(root_type=fs_type))[fs_type]
    assert result.status is Status.ERROR
    assert f"crishim has no {fs_type} driver" in result.reason


def test_aufs_in_the_kernel_is_not_enough_without_a_driver(tmp_path: Path) -> None:
    assert probe_all(tmp_path, FakeHost(filesystem_types={"aufs", "overlay"}))["aufs"].status is Status.ERROR


def test_configured_devmapper_and_blockfile_still_have_no_driver(tmp_path: Path) -> None:
    assert plugins.probe_devmapper(FakeHost(), tmp_path, configured=True).status is Status.OK
    assert plugins.probe_blockfile(FakeHost(), tmp_path, configured=True).status is Status.OK
    assert plugins.probe_blockfile(FakeHost(), tmp_path).status is Status.SKIP


def test_live_host_reads_proc(tmp_path: Path) -> None:
    host = LiveHost()
    assert "proc" in host.filesystems()
    assert host.fs_type(Path("/proc/self")) == "proc"
    # A path that does not exist yet is judged by the folder it would be made in.
    assert host.fs_type(tmp_path / "not" / "yet") == host.fs_type(tmp_path)


def test_live_overlay_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    error = LiveHost().overlay_mount_error(tmp_path / "root")
    if os.geteuid() != 0:
        assert error  # only root may mount
    assert list((tmp_path / "root").iterdir()) == []
