from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cri.scrape_metrics import BuildInfo, DiskUsage, ObjectStates, ProcessThreads
from snapshotters.native import NativeSnapshotter
from store.content import ContentStore
from store.digest import sha256_of


def registry_with(*collectors: object) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return registry


def test_states_are_counted_at_each_scrape_every_known_state_shown() -> None:
    containers = ["running", "running", "exited"]
    registry = registry_with(ObjectStates(lambda: containers, lambda: ["ready"]))
    value = registry.get_sample_value
    assert value("crishim_containers", {"state": "running"}) == 2
    assert value("crishim_containers", {"state": "created"}) == 0
    assert value("crishim_pod_sandboxes", {"state": "notready"}) == 0
    containers.append("created")
    assert value("crishim_containers", {"state": "created"}) == 1


def test_registering_reads_nothing() -> None:
    def unreadable() -> list[str]:
        raise AssertionError("read at registration")

    registry_with(ObjectStates(unreadable, unreadable))


@pytest.fixture
def snapshotter(tmp_path: Path) -> Iterator[NativeSnapshotter]:
    sn = NativeSnapshotter(tmp_path / "native").open()
    yield sn
    sn.close()


def test_disk_usage_is_cached_until_invalidated(tmp_path: Path, snapshotter: NativeSnapshotter) -> None:
    content = ContentStore(tmp_path / "content").open()
    walks = []

    def content_usage() -> tuple[int, int]:
        walks.append(1)
        return content.usage()

    usage = DiskUsage(tmp_path, content_usage, {"native": snapshotter})
    registry = registry_with(usage)
    assert walks == []
    assert registry.get_sample_value("crishim_content_bytes") == 0
    data = b"layer" * 1000
    with content.writer("ref", sha256_of(data), len(data)) as writer:
        writer.write(data)
        writer.commit()
    mounts = snapshotter.prepare("rw")
    (Path(mounts[0].source) / "file").write_bytes(b"x" * 5000)
    assert registry.get_sample_value("crishim_content_bytes") == 0  # cached
    usage.invalidate()
    assert registry.get_sample_value("crishim_content_bytes") == len(data)
    assert registry.get_sample_value("crishim_content_blobs") == 1
    assert registry.get_sample_value("crishim_snapshots", {"snapshotter": "native"}) == 1
    assert (registry.get_sample_value("crishim_snapshot_bytes", {"snapshotter": "native"}) or 0) >= 5000
    assert len(walks) == 2  # once at the first scrape, once after the invalidation
    assert (registry.get_sample_value("crishim_root_filesystem_size_bytes") or 0) > 0


def test_disk_usage_measures_once_for_concurrent_scrapes(tmp_path: Path, snapshotter: NativeSnapshotter) -> None:
    walks = []
    usage = DiskUsage(tmp_path, lambda: walks.append(1) or (0, 0), {"native": snapshotter})
    threads = [threading.Thread(target=lambda: list(usage.collect())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert walks == [1]


def test_build_info_and_threads() -> None:
    registry = registry_with(BuildInfo("1.2.3", "abc123"), ProcessThreads())
    assert registry.get_sample_value("crishim_build_info", {"version": "1.2.3", "revision": "abc123"}) == 1
    assert (registry.get_sample_value("process_threads") or 0) >= threading.active_count()
