"""Snapshot usage measured in passes, not on every call: ImageFsInfo and container stats on a node with a
thousand containers must not walk a thousand writable layers each time (containerd's CRI caches it too)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from cri.api.runtime.v1 import api_pb2
from cri.config import Config, ImageSettings
from cri.image_service import ImageService
from cri.metrics import Metrics
from cri.node import open_image_parts, open_image_service
from cri.snapshot_usage import SnapshotUsage
from errdefs import NotFound
from snapshotters.native import NativeSnapshotter
from tests.support.procs import wait_until

MIB = 1 << 20


@pytest.fixture
def snapshotter(tmp_path: Path) -> Iterator[NativeSnapshotter]:
    sn = NativeSnapshotter(tmp_path / "native").open()
    yield sn
    sn.close()


@pytest.fixture
def usage(snapshotter: NativeSnapshotter) -> Iterator[SnapshotUsage]:
    measured = SnapshotUsage(snapshotter, period=3600)
    yield measured
    measured.close()


def writable_layer(sn: NativeSnapshotter, key: str) -> Path:
    return Path(sn.prepare(key)[0].source)


def total(usage: SnapshotUsage, sn: NativeSnapshotter) -> int:
    return usage.by_folder()[sn.root].usage.size


def test_imagefsinfo_answers_the_last_measurement_instead_of_walking_the_writable_layers(tmp_path: Path) -> None:
    config = Config(root=tmp_path / "root", state=tmp_path / "state", image=ImageSettings(snapshotter="native"))
    with ExitStack() as stack:
        parts = open_image_parts(config, Metrics(), stack)
        images = open_image_service(config, parts, Metrics(), stack)
        layer = Path(parts.snapshotter.prepare("container")[0].source)
        (layer / "first").write_bytes(os.urandom(MIB))
        measured = _used(images)
        assert measured >= MIB
        (layer / "second").write_bytes(os.urandom(MIB))
        assert _used(images) == measured  # nothing walked the layer again
        parts.snapshot_usage.refresh()
        assert _used(images) >= measured + MIB


def _used(images: ImageService) -> int:
    answer = images.ImageFsInfo(api_pb2.ImageFsInfoRequest(), None)
    (containers,) = answer.container_filesystems
    return int(containers.used_bytes.value)


def test_a_snapshot_no_pass_has_seen_is_measured_when_asked_for(snapshotter: NativeSnapshotter,
                                                                 usage: SnapshotUsage) -> None:
    usage.refresh()
    layer = writable_layer(snapshotter, "new")
    (layer / "data").write_bytes(os.urandom(MIB))
    measured = usage.get("new")
    assert measured.usage.size >= MIB
    assert measured.folder == snapshotter.root
    (layer / "more").write_bytes(os.urandom(MIB))
    assert usage.get("new") == measured  # kept until the next pass
    usage.refresh()
    assert usage.get("new").usage.size >= 2 * MIB


def test_a_removed_snapshot_leaves_the_totals_at_the_next_pass(snapshotter: NativeSnapshotter,
                                                               usage: SnapshotUsage) -> None:
    (writable_layer(snapshotter, "doomed") / "data").write_bytes(os.urandom(MIB))
    assert total(usage, snapshotter) >= MIB
    snapshotter.remove("doomed")
    usage.refresh()
    assert total(usage, snapshotter) < MIB
    with pytest.raises(NotFound):
        usage.get("doomed")


def test_totals_before_the_first_pass_wait_for_one(snapshotter: NativeSnapshotter, usage: SnapshotUsage) -> None:
    (writable_layer(snapshotter, "layer") / "data").write_bytes(os.urandom(MIB))
    folders = usage.by_folder()
    assert folders[snapshotter.root].usage.size >= MIB
    assert folders[snapshotter.root].timestamp > 0


def test_a_request_measures_again_on_the_background_thread(snapshotter: NativeSnapshotter,
                                                            usage: SnapshotUsage) -> None:
    layer = writable_layer(snapshotter, "layer")
    usage.start()
    wait_until(lambda: usage.get("layer").timestamp > 0, timeout=10, what="the first pass")
    (layer / "data").write_bytes(os.urandom(MIB))
    usage.request()
    wait_until(lambda: total(usage, snapshotter) >= MIB, timeout=10, what="a pass after the request")
    usage.close()
    assert "snapshot-usage" not in {t.name for t in threading.enumerate()}
