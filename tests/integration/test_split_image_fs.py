"""A split image filesystem: crishim with ``writable_layers_dir`` on a filesystem of its own (a tmpfs the test
mounts and removes). Containers write there, image layers stay under root, and ImageFsInfo reports the two
filesystems apart with usage that follows what a container writes (within a measurement period, short here),
as kubelet reads it to collect images and evict pods on each disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from snapshotters.registry import snapshotter_root
from tests.integration.test_check import check
from tests.support.cri_env import CriEnv
from tests.support.mounts import tmpfs
from tests.support.tools import require_root

WRITTEN = 8 << 20
# Snapshot usage is measured in passes this far apart (and soon after a pull or a removal).
CONFIG = "stats_collect_period = 0.5"


@pytest.fixture
def container_fs(tmp_path: Path) -> Iterator[Path]:
    require_root("mounting a tmpfs for containers' writable layers")
    with tmpfs(tmp_path / "container-fs", size_mib=64) as mounted:
        yield mounted


def _fs_info(env: CriEnv) -> api_pb2.ImageFsInfoResponse:
    with grpc.insecure_channel(f"unix://{env.daemon.socket}") as channel:
        response: api_pb2.ImageFsInfoResponse = api_pb2_grpc.ImageServiceStub(channel).ImageFsInfo(
            api_pb2.ImageFsInfoRequest(), timeout=60)
        return response


def _fs_info_when(env: CriEnv, ready: Callable[[api_pb2.ImageFsInfoResponse], bool]) -> api_pb2.ImageFsInfoResponse:
    """ImageFsInfo once a measurement pass has made ``ready`` true of it."""
    deadline = time.monotonic() + 30
    while not ready(info := _fs_info(env)):
        assert time.monotonic() < deadline, f"ImageFsInfo did not report the change; it answers {info}"
        time.sleep(0.2)
    return info


def _used(statvfs_of: Path) -> int:
    st = os.statvfs(statvfs_of)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_containers_write_on_their_own_filesystem_and_imagefsinfo_reports_each(
        container_fs: Path, cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config=f'writable_layers_dir = "{container_fs}"\n{CONFIG}')
    image_root = snapshotter_root(cri.daemon.root, "overlayfs")
    container_root = snapshotter_root(container_fs, "overlayfs")
    before = _fs_info_when(cri, lambda info: info.image_filesystems[0].used_bytes.value > 0)
    (image_fs,) = before.image_filesystems
    (containers_fs,) = before.container_filesystems
    assert image_fs.fs_id.mountpoint == str(image_root)
    assert containers_fs.fs_id.mountpoint == str(container_root)
    assert os.stat(image_root).st_dev != os.stat(container_root).st_dev  # two disks, as kubelet tells them
    assert image_fs.used_bytes.value > 0  # the pulled image
    # crictl shows both too.
    shown = cri.json("imagefsinfo")["status"]
    assert shown["containerFilesystems"][0]["fsId"]["mountpoint"] == str(container_root)

    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("writer"))
    disk_before = _used(container_fs)
    cri.exec(container_id, "busybox", "dd", "if=/dev/zero", "of=/written", "bs=1M", f"count={WRITTEN >> 20}")
    after = _fs_info_when(cri, lambda info: info.container_filesystems[0].used_bytes.value
                          >= containers_fs.used_bytes.value + WRITTEN)
    assert after.container_filesystems[0].inodes_used.value > containers_fs.inodes_used.value
    assert after.image_filesystems[0].used_bytes.value == image_fs.used_bytes.value  # image layers untouched
    assert _used(container_fs) - disk_before >= WRITTEN  # the bytes are on that disk
    stats = cri.rpc("ContainerStats", api_pb2.ContainerStatsRequest(container_id=container_id)).stats
    assert stats.writable_layer.fs_id.mountpoint == str(container_root)
    assert stats.writable_layer.used_bytes.value >= WRITTEN
    # crishim check finds the layer on the other disk through the root's link, and what is stray there.
    healthy = check(cri.daemon)
    assert (healthy.returncode, healthy.stdout) == (0, ""), healthy.stdout + healthy.stderr
    (container_root / "snapshots" / "99999").mkdir()
    assert check(cri.daemon).stdout.split("\t")[:2] == ["snapshot-folder-unowned",
                                                       str(container_root / "snapshots" / "99999")]
    (container_root / "snapshots" / "99999").rmdir()

    cri.crictl("rmp", "-f", pod_id)
    _fs_info_when(cri, lambda info: info.container_filesystems[0].used_bytes.value == containers_fs.used_bytes.value)
    assert os.listdir(container_root / "snapshots") == []
