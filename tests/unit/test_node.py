"""The composition root: constructors do no I/O, parts are opened explicitly and closed in reverse."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from cri.config import Config, ImageSettings
from cri.metrics import Metrics
from cri.node import open_containerd_api, open_image_parts, open_image_service
from errdefs import CrishimError, InvalidArgument
from snapshotters.registry import snapshotters_under
from store.content import ContentStore
from store.metadata import MetadataDB


def test_the_stores_constructors_touch_nothing_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    MetadataDB(root / "meta.db")
    ContentStore(root / "content")
    snapshotters_under(root, tmp_path / "writable")
    assert not root.exists()
    assert not (tmp_path / "writable").exists()


def test_a_store_is_usable_once_opened(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "meta.db")
    with pytest.raises(CrishimError, match="not open"):
        db.list_images("k8s.io")
    db.open()
    try:
        assert db.list_images("k8s.io") == []
    finally:
        db.close()


def test_closing_the_stack_stops_the_parts_threads_and_closes_the_database(tmp_path: Path) -> None:
    config = Config(root=tmp_path / "root", state=tmp_path / "state")
    with ExitStack() as stack:
        parts = open_image_parts(config, Metrics(), stack)
        open_image_service(config, parts, Metrics(), stack)
        open_containerd_api(config, parts, stack)
        parts.gc.schedule()
        assert "gc" in {t.name for t in threading.enumerate()}
    assert "gc" not in {t.name for t in threading.enumerate()}
    with pytest.raises(CrishimError):
        parts.gc.collect()
    # SQLite removes a WAL database's side files when its last connection closes.
    assert sorted(p.name for p in (config.root / "io.containerd.metadata.v1.sqlite").iterdir()) == ["meta.db"]


def test_a_part_that_cannot_open_closes_what_was_opened_before_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "io.containerd.snapshotter.v1.native").write_text("not a folder")  # opened after the database
    with pytest.raises(OSError), ExitStack() as stack:
        open_image_parts(Config(root=root, state=tmp_path / "state"), Metrics(), stack)
    assert sorted(p.name for p in (root / "io.containerd.metadata.v1.sqlite").iterdir()) == ["meta.db"]


def test_a_configured_snapshotter_crishim_lacks_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    config = Config(root=tmp_path / "root", state=tmp_path / "state", image=ImageSettings(snapshotter="zfs"))
    with pytest.raises(InvalidArgument, match="zfs"), ExitStack() as stack:
        open_image_parts(config, Metrics(), stack)
    assert not config.root.exists()
