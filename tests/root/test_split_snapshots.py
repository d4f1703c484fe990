"""Containers' writable layers on a filesystem of their own (a tmpfs the test mounts): where the overlayfs and
native drivers put each kind of snapshot, what a commit moves, and what a restart, a dropped setting and a
crash leave.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from errdefs import AlreadyExists
from snapshotters import NativeSnapshotter, OverlaySnapshotter, Snapshotter
from snapshotters.local import LocalSnapshotter
from snapshotters.snapshotter import LABEL_LAYER_OF, Kind
from snapshotters.testsuite import mounted
from tests.support.mounts import tmpfs
from tests.support.tools import require_root

DRIVERS = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


@pytest.fixture
def second_fs(tmp_path: Path) -> Iterator[Path]:
    require_root("mounting a tmpfs and snapshots")
    with tmpfs(tmp_path / "writable-fs") as mounted_fs:
        yield mounted_fs


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def _device(path: str | Path) -> int:
    return os.stat(path).st_dev


def _base(sn: Snapshotter, scratch: Path) -> None:
    """A committed layer unpacked as the unpacker does (labelled with the name it becomes)."""
    sn.prepare("extract-base", labels={LABEL_LAYER_OF: "base"})
    assert _device(sn.apply_dir("extract-base")) == _device(sn.root)  # unpacks stay with the image layers
    with mounted(sn, "extract-base", scratch) as root:
        (root / "lower-file").write_bytes(b"from the image")
        (root / "dir").mkdir()
        (root / "dir" / "old").write_bytes(b"old")
    sn.commit("base", "extract-base")


def test_a_containers_writable_layer_is_made_on_its_own_filesystem_over_the_image_layers(
        second_fs: Path, tmp_path: Path, scratch: Path) -> None:
    sn = OverlaySnapshotter(tmp_path / "root", second_fs / "overlayfs").open()
    _base(sn, scratch)
    sn.prepare("container", "base")
    assert sn.location("container") == sn.writable_root == str(second_fs / "overlayfs")
    assert sn.location("base") == sn.root
    (mount,) = sn.mounts("container")
    options = dict(o.split("=", 1) for o in mount.options if "=" in o)
    # overlayfs wants upper and work on one filesystem; the lower layers may be elsewhere.
    assert _device(options["upperdir"]) == _device(options["workdir"]) == _device(second_fs)
    assert _device(options["lowerdir"]) == _device(sn.root) != _device(second_fs)
    free_before = os.statvfs(second_fs).f_bfree
    with mounted(sn, "container", scratch) as root:
        assert (root / "lower-file").read_bytes() == b"from the image"
        (root / "written").write_bytes(b"w" * (4 << 20))
    assert (Path(options["upperdir"]) / "written").stat().st_size == 4 << 20
    assert free_before - os.statvfs(second_fs).f_bfree >= (4 << 20) // os.statvfs(second_fs).f_frsize
    assert sn.usage("container").size >= 4 << 20
    # Views and committed layers are image layers: they stay in the root.
    sn.view("view", "base")
    assert sn.location("view") == sn.root
    sn.remove("container")
    assert os.listdir(second_fs / "overlayfs" / "snapshots") == []
    sn.close()


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_a_committed_writable_layer_moves_into_the_root_whole(driver: str, second_fs: Path, tmp_path: Path,
                                                               scratch: Path) -> None:
    sn = DRIVERS[driver](tmp_path / "root", second_fs / driver).open()
    _base(sn, scratch)
    sn.prepare("container", "base")
    with mounted(sn, "container", scratch) as root:
        (root / "lower-file").unlink()  # a whiteout in the upper layer
        (root / "dir" / "old").unlink()
        os.rmdir(root / "dir")
        (root / "dir").mkdir()  # an opaque folder over the image's
        (root / "dir" / "new").write_bytes(b"new")
        (root / "linked").write_bytes(b"shared")
        os.link(root / "linked", root / "also-linked")
        (root / "owned").write_bytes(b"")
        os.chown(root / "owned", 1234, 5678)
        os.chmod(root / "owned", 0o4710)
        os.setxattr(root / "owned", "user.note", b"kept")
    sn.commit("committed", "container")
    assert sn.location("committed") == sn.root
    assert os.listdir(second_fs / driver / "snapshots") == []  # nothing left on the other disk
    sn.view("check", "committed")
    with mounted(sn, "check", scratch) as root:
        assert sorted(os.listdir(root)) == ["also-linked", "dir", "linked", "owned"]
        assert os.listdir(root / "dir") == ["new"]
        assert (root / "linked").stat().st_ino == (root / "also-linked").stat().st_ino
        owned = (root / "owned").stat()
        assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1234, 5678, 0o4710)
        assert os.getxattr(root / "owned", "user.note") == b"kept"
    # A layer on top of it works like on any committed layer.
    sn.prepare("next", "committed")
    with mounted(sn, "next", scratch) as root:
        assert (root / "dir" / "new").read_bytes() == b"new"
    sn.close()


def test_a_refused_commit_leaves_the_writable_layer_where_and_as_it_was(second_fs: Path, tmp_path: Path,
                                                                       scratch: Path) -> None:
    sn = OverlaySnapshotter(tmp_path / "root", second_fs / "overlayfs").open()
    _base(sn, scratch)
    sn.prepare("container", "base")
    with mounted(sn, "container", scratch) as root:
        (root / "mine").write_bytes(b"mine")
    with pytest.raises(AlreadyExists):
        sn.commit("base", "container")
    assert sn.stat("container").kind == Kind.ACTIVE and sn.location("container") == sn.writable_root
    with mounted(sn, "container", scratch) as root:
        assert (root / "mine").read_bytes() == b"mine"
    ids = {str(_folder_id(sn, "container"))}
    assert set(os.listdir(second_fs / "overlayfs" / "snapshots")) == ids
    assert not [n for n in os.listdir(Path(sn.root) / "snapshots") if not n.isdigit()]  # no copy left behind
    sn.close()


def test_layers_on_the_other_filesystem_are_found_after_a_restart_and_after_the_setting_is_dropped(
        second_fs: Path, tmp_path: Path, scratch: Path) -> None:
    root, writable = tmp_path / "root", second_fs / "overlayfs"
    sn = OverlaySnapshotter(root, writable).open()
    _base(sn, scratch)
    sn.prepare("old-container", "base")
    with mounted(sn, "old-container", scratch) as merged:
        (merged / "mine").write_bytes(b"mine")
    sn.close()
    # Without the setting: the old layer is found through the root's link, new ones are made in the root.
    sn = OverlaySnapshotter(root).open()
    assert sn.writable_root == sn.root
    assert sn.stat("old-container").kind == Kind.ACTIVE
    with mounted(sn, "old-container", scratch) as merged:
        assert (merged / "mine").read_bytes() == b"mine"
    sn.prepare("new-container", "base")
    assert _device(sn.apply_dir("new-container")) == _device(root)
    sn.remove("old-container")
    assert os.listdir(writable / "snapshots") == []
    sn.close()


def test_a_restart_sweeps_what_a_crash_left_on_the_other_filesystem(second_fs: Path, tmp_path: Path) -> None:
    root, writable = tmp_path / "root", second_fs / "overlayfs"
    sn: LocalSnapshotter = OverlaySnapshotter(root, writable).open()
    sn.prepare("live")
    sn.close()
    for leftover in ("new-half-made", "rm-7", "99999"):
        (writable / "snapshots" / leftover).mkdir()
    sn = OverlaySnapshotter(root, writable).open()
    assert os.listdir(writable / "snapshots") == [str(_folder_id(sn, "live"))]
    assert sn.stat("live").kind == Kind.ACTIVE
    sn.close()


def _folder_id(sn: Snapshotter, key: str) -> int:
    return int(Path(sn.apply_dir(key)).parent.name)
