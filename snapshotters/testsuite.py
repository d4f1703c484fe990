"""One conformance suite for every snapshotter driver, as containerd's SnapshotterSuite.

Each check takes a fresh snapshotter and a scratch folder; ``tests/`` runs them
all for overlayfs and native. They mount for real, so they need root.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from errdefs import AlreadyExists, FailedPrecondition, NotFound
from snapshotters.mount import mount_all, unmount
from snapshotters.snapshotter import Info, Kind, Snapshotter

__all__ = ["CHECKS", "Check"]

Check = Callable[[Snapshotter, Path], None]


@contextmanager
def mounted(sn: Snapshotter, key: str, scratch: Path) -> Iterator[Path]:
    target = Path(tempfile.mkdtemp(dir=scratch))
    mount_all(sn.mounts(key), target)
    try:
        yield target
    finally:
        unmount(target)
        target.rmdir()


def _layer(sn: Snapshotter, scratch: Path, name: str, parent: str, files: dict[str, bytes | None]) -> None:
    """Commit a layer that writes ``files`` (None deletes) on top of ``parent``, through a mount."""
    key = f"extract-{name}"
    sn.prepare(key, parent)
    with mounted(sn, key, scratch) as root:
        for path, data in files.items():
            if data is None:
                os.unlink(root / path)
            else:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(data)
    sn.commit(name, key)


def check_prepare_commit_view(sn: Snapshotter, scratch: Path) -> None:
    _layer(sn, scratch, "base", "", {"a": b"1", "dir/b": b"2"})
    sn.view("v", "base")
    with mounted(sn, "v", scratch) as root:
        assert (root / "a").read_bytes() == b"1"
        assert (root / "dir/b").read_bytes() == b"2"
    assert sn.stat("base").kind == Kind.COMMITTED
    assert sn.stat("v") == Info(Kind.VIEW, "v", "base", {}, sn.stat("v").created_at, sn.stat("v").updated_at)


def check_layers_stack_and_delete(sn: Snapshotter, scratch: Path) -> None:
    _layer(sn, scratch, "l1", "", {"keep": b"k", "gone": b"g", "over": b"old"})
    _layer(sn, scratch, "l2", "l1", {"gone": None, "over": b"new"})
    _layer(sn, scratch, "l3", "l2", {"top": b"t"})
    sn.prepare("container", "l3")
    with mounted(sn, "container", scratch) as root:
        assert sorted(os.listdir(root)) == ["keep", "over", "top"]
        assert (root / "over").read_bytes() == b"new"
        (root / "written").write_bytes(b"w")
    sn.view("again", "l3")
    with mounted(sn, "again", scratch) as root:
        assert not (root / "written").exists()


def check_parent_must_be_committed(sn: Snapshotter, scratch: Path) -> None:
    sn.prepare("active")
    _expect(FailedPrecondition, lambda: sn.prepare("child", "active"))
    _expect(NotFound, lambda: sn.prepare("orphan", "missing"))
    _expect(NotFound, lambda: sn.commit("x", "missing"))
    sn.commit("done", "active")
    _expect(NotFound, lambda: sn.commit("again", "active"))
    sn.view("v", "done")
    _expect(FailedPrecondition, lambda: sn.commit("from-view", "v"))


def check_names_are_unique(sn: Snapshotter, scratch: Path) -> None:
    sn.prepare("k")
    _expect(AlreadyExists, lambda: sn.prepare("k"))
    sn.prepare("k2")
    sn.commit("name", "k2")
    sn.prepare("k3")
    _expect(AlreadyExists, lambda: sn.commit("name", "k3"))
    assert sn.stat("k3").kind == Kind.ACTIVE


def check_remove_with_children_fails(sn: Snapshotter, scratch: Path) -> None:
    _layer(sn, scratch, "p", "", {"f": b"x"})
    sn.prepare("c", "p")
    _expect(FailedPrecondition, lambda: sn.remove("p"))
    sn.remove("c")
    sn.remove("p")
    _expect(NotFound, lambda: sn.stat("p"))
    _expect(NotFound, lambda: sn.remove("p"))


def check_walk_filters_and_labels(sn: Snapshotter, scratch: Path) -> None:
    sn.prepare("a", labels={"role": "x"})
    sn.commit("ca", "a")
    sn.prepare("b", "ca", labels={"containerd.io/gc.root": "1"})
    seen: list[str] = []
    sn.walk(lambda info: seen.append(info.name))
    assert sorted(seen) == ["b", "ca"]
    seen.clear()
    sn.walk(lambda info: seen.append(info.name), ["kind==committed"])
    assert seen == ["ca"]
    seen.clear()
    sn.walk(lambda info: seen.append(info.name), ['labels."containerd.io/gc.root"'])
    assert seen == ["b"]
    info = sn.update(Info(Kind.ACTIVE, "b", labels={"new": "1"}), ["labels.new"])
    assert info.labels == {"containerd.io/gc.root": "1", "new": "1"}
    assert sn.update(Info(Kind.ACTIVE, "b", labels={}), ["labels.new"]).labels == {"containerd.io/gc.root": "1"}


def check_usage(sn: Snapshotter, scratch: Path) -> None:
    sn.prepare("u")
    before = sn.usage("u")
    with mounted(sn, "u", scratch) as root:
        (root / "big").write_bytes(b"x" * (1 << 20))
    during = sn.usage("u")
    assert during.size >= before.size + (1 << 20) and during.inodes == before.inodes + 1
    moved = sn.location("u") != sn.root
    sn.commit("uc", "u")
    committed = sn.usage("uc")
    if moved:  # a writable layer committed into the root: measured on that filesystem, whose blocks differ
        assert committed.inodes == during.inodes and committed.size >= 1 << 20
    else:
        assert committed == during


def check_crash_leftovers_are_swept(sn: Snapshotter, scratch: Path) -> None:
    snapshots = Path(sn.root) / "snapshots"
    (snapshots / "new-half-made").mkdir()
    (snapshots / "99999").mkdir()
    sn.prepare("live")
    before = set(os.listdir(snapshots))
    sn.cleanup()  # type: ignore[attr-defined]
    after = set(os.listdir(snapshots))
    assert before - after == {"new-half-made", "99999"}
    seen: list[str] = []
    sn.walk(lambda info: seen.append(info.name))
    assert seen == ["live"]


def _expect(error: type[Exception], action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the type is asserted right below
        assert isinstance(exc, error), f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
        return
    raise AssertionError(f"expected {error.__name__}, nothing was raised")


CHECKS: dict[str, Check] = {
    name.removeprefix("check_"): fn for name, fn in globals().items() if name.startswith("check_")
}
