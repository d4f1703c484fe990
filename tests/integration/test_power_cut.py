"""A power cut during a pull, simulated: the daemon's root is ext4 on a loop device, and the device's
contents are copied at an instant during the pull (tests.support.power_cut), losing whatever had not been
written back, while containers' snapshots are prepared beside it (each of those syncs the snapshot records,
so layers whose records survive the cut may have lost files). A daemon started on the copy must list no half
image and keep no layer that differs from a clean pull's: a layer whose files were lost is unpacked again
from the journal, or collected when no image names it. Pulling again completes with the same image.
The report says how many cuts found journal entries and how many committed layers had lost files."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.images import push_layered_image
from tests.support.daemon import Crishim, CrishimOptions
from tests.support.power_cut import copy_device, loop_disk
from tests.support.registry import Registry
from tests.support.report import say
from tests.support.tools import binary
from tests.support.tree import Tree, list_tree, tree_differences

OVERLAY = Path("io.containerd.snapshotter.v1.overlayfs")
JOURNAL = Path("unpack-journal") / "overlayfs"
CUTS = 6


@pytest.fixture(scope="module")
def many_layers(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """20 layers of 1 MiB files: many commits, each with data to lose."""
    return push_layered_image(tmp_path_factory.mktemp("power-cut-image"), registry, 20, files=4)


def committed_trees(root: Path) -> dict[str, Tree]:
    db = sqlite3.connect(f"file:{root / OVERLAY / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, key FROM snapshots WHERE kind=3").fetchall()
    finally:
        db.close()
    trees = {key: list_tree(root / OVERLAY / "snapshots" / str(sid) / "fs") for sid, key in rows}
    for tree in trees.values():
        tree.pop("/", None)  # made when the snapshot was, not by the layer: its times differ from pull to pull
    return trees


def unfinished_unpacks(root: Path) -> list[str]:
    db = sqlite3.connect(f"file:{root / OVERLAY / 'metadata.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT key FROM snapshots WHERE kind=2 AND key LIKE 'extract-%'")]
    finally:
        db.close()


def durable_writes(daemon: Crishim, stop: threading.Event) -> None:
    """Snapshots prepared for containers while the pull runs, as kubelet makes them: each such commit
    syncs the snapshot records' log, and with it the records of layers committed before it, whose files
    may not be written back yet. Those layers are what the unpack journal must redo after the cut."""
    for n in itertools.count():
        if stop.is_set():
            return
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run([binary("ctr"), "-a", str(daemon.socket), "-n", "k8s.io", "snapshots",
                            "--snapshotter", "overlayfs", "prepare", f"container-{n}", ""],
                           capture_output=True, timeout=2)


def test_a_power_cut_during_a_pull_leaves_no_half_image(
    request: pytest.FixtureRequest, crishim_factory: Callable[..., Crishim], registry: Registry,
    many_layers: str, tmp_path: Path,
) -> None:
    reference = crishim_factory()
    started = time.monotonic()
    reference.crictl("pull", many_layers)
    pull_seconds = time.monotonic() - started
    [image] = reference.images()
    expected = committed_trees(reference.root)
    reference.stop()
    rng = random.Random(20261202)
    caught = {"journal entries": 0, "unfinished unpacks": 0, "layers to redo": 0, "image listed": 0}
    for cut in range(CUTS):
        work = tmp_path / f"cut-{cut}"
        work.mkdir()
        at = rng.uniform(0.1, 1.3) * pull_seconds
        with loop_disk(work / "disk.img", work / "disk", fresh=True) as device:
            daemon = Crishim(work / "disk" / "w", CrishimOptions([registry.host]))
            daemon.start()
            try:
                assert daemon.process is not None
                stop = threading.Event()
                writer = threading.Thread(target=durable_writes, args=(daemon, stop))
                writer.start()
                puller = subprocess.Popen(daemon.crictl_client.command("pull", many_layers),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(at)
                stop.set()
                os.kill(daemon.process.pid, signal.SIGSTOP)
                copy_device(device, work / "after-cut.img")
                os.kill(daemon.process.pid, signal.SIGKILL)
                daemon.process.wait()
                puller.wait(timeout=60)
                writer.join()
            finally:
                daemon.cleanup()
        with loop_disk(work / "after-cut.img", work / "restored", fresh=False):
            root = work / "restored" / "w" / "root"
            journalled = root / JOURNAL
            caught["journal entries"] += bool(journalled.is_dir() and any(journalled.iterdir()))
            caught["unfinished unpacks"] += bool((root / OVERLAY / "metadata.db").exists() and unfinished_unpacks(root))
            caught["layers to redo"] += _lost_layers(root, expected)
            restarted = Crishim(work / "restored" / "w", CrishimOptions([registry.host]))
            restarted.start()
            try:
                listed = restarted.images()
                caught["image listed"] += bool(listed)
                assert listed in ([], [image]), f"cut {cut} at {at:.2f} s: {listed}"
                _assert_whole(root, expected, only=set(expected) if listed else None, cut=cut)
                assert not unfinished_unpacks(root), f"cut {cut}: unfinished unpacks left"
                restarted.crictl("pull", many_layers)
                assert restarted.images() == [image]
                _assert_whole(root, expected, only=set(expected), cut=cut)
                restarted.stop()
                assert not (journalled.is_dir() and any(journalled.iterdir())), f"cut {cut}: journal left"
            finally:
                restarted.cleanup()
    say(request.config, f"power cut: {CUTS} cuts during a {pull_seconds:.2f} s pull; at restart {caught}")


def _lost_layers(root: Path, expected: dict[str, Tree]) -> int:
    """Committed layers whose files the cut took (before any restart): what only the journal can mend."""
    if not (root / OVERLAY / "metadata.db").exists():
        return 0
    return sum(1 for chain, tree in committed_trees(root).items() if tree_differences(tree, expected[chain]))


def _assert_whole(root: Path, expected: dict[str, Tree], only: set[str] | None, cut: int) -> None:
    """Every committed layer matches the clean pull's; ``only``: these must all be there."""
    found = committed_trees(root)
    if only is not None:
        assert only <= set(found), f"cut {cut}: layers missing: {sorted(only - set(found))}"
    for chain, tree in found.items():
        differences = tree_differences(tree, expected[chain], "after the cut", "clean pull")
        assert not differences, f"cut {cut}: layer {chain} differs:\n" + "\n".join(differences[:20])
