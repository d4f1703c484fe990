"""The seed document's walkthrough, run with ctr against crishim and against containerd 1.6 on one image: a
multi-layer Debian bookworm image with nginx, pulled with crictl into both.

The seed's commands: `ctr content ls`, `ctr snapshot ls`, `ctr image ls`, `ctr plugin ls | grep snapshot`, then
a container's Active snapshot over the image's top chain ID and its overlay mount. Each listing must match
containerd's (AGE aside); the image root and every layer's view must hold identical trees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.containerd import Containerd
from tests.support.containerd_plugins import plugin_ls_of_default_containerd
from tests.support.ctr_client import Ctr
from tests.support.ctr_listings import columns, grep_plugins, header, parse_content_ls
from tests.support.daemon import launch
from tests.support.fidelity import (
    Unpacked,
    compare_layer_dirs,
    compare_view,
    expected_rows,
    format_differences,
    pull_both,
    snapshot_rows,
)
from tests.support.registry import Registry
from tests.support.seed_image import SeedImage

CONTAINER = "nginx0"
# Plugins crishim lists that containerd 1.6 does not have: its own proxy snapshotter, and blockfile, which
# containerd 1.7 (the seed's) lists.
CRISHIM_ONLY_PLUGINS = {("io.containerd.snapshotter.v1", "crishim"), ("io.containerd.snapshotter.v1", "blockfile")}
SNAPSHOT_DIR = re.compile(r"/\S*?/io\.containerd\.snapshotter\.v1\.overlayfs/snapshots/(\d+)/")


@dataclass
class Walkthrough:
    image: SeedImage
    unpacked: Unpacked

    @property
    def ctrs(self) -> dict[str, Ctr]:
        return self.unpacked.ctrs

    def both(self, *args: str) -> dict[str, str]:
        self.unpacked.require_pulled()
        return {side: ctr.out(*args) for side, ctr in self.ctrs.items()}


@pytest.fixture(scope="module")
def walkthrough(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    containerd: Containerd,
    registry: Registry,
    auth_registry: Registry,
    seed_image: SeedImage,
) -> Iterator[Walkthrough]:
    containerd.reset()
    daemon = launch(tmp_path_factory.mktemp("crishim-seed"), [registry.host, auth_registry.host])
    failures_before = request.session.testsfailed
    try:
        unpacked = pull_both(seed_image.ref, seed_image.chain_ids, daemon, containerd)
        seconds = ", ".join(f"{side} {s:.1f} s" for side, s in unpacked.pull_seconds.items())
        print(f"\nseed image pull + unpack: {seconds}")
        yield Walkthrough(seed_image, unpacked)
    finally:
        if request.session.testsfailed > failures_before:
            print(f"\n--- crishim log tail ({daemon.log_path}) ---\n{daemon.log_tail()}")
        daemon.cleanup()


def test_image_has_the_seed_shape(walkthrough: Walkthrough) -> None:
    # Like the seed's nginx: several layers, the bottom one a whole distribution.
    assert len(walkthrough.image.diff_ids) == 5
    walkthrough.unpacked.require_pulled()


def test_ctr_content_ls(walkthrough: Walkthrough) -> None:
    out = walkthrough.both("content", "ls")
    assert header(out["crishim"]) == header(out["containerd"])
    rows = {side: parse_content_ls(text) for side, text in out.items()}
    pushed = walkthrough.image.pushed
    assert {r.digest for r in rows["containerd"]} == {pushed.digest, pushed.config_digest, *pushed.layer_digests}
    assert [r.digest for r in rows["crishim"]] == [r.digest for r in rows["containerd"]], "rows or their order"
    differences = [f"{mine.digest}: crishim {mine} != containerd {theirs}"
                   for mine, theirs in zip(rows["crishim"], rows["containerd"], strict=True) if mine != theirs]
    assert not differences, "\n".join(differences)


def test_ctr_snapshot_ls(walkthrough: Walkthrough) -> None:
    out = walkthrough.both("snapshot", "ls")
    assert columns(out["crishim"]) == columns(out["containerd"])
    assert header(out["crishim"]) == header(out["containerd"]) == ["KEY", "PARENT", "KIND"]
    assert snapshot_rows(walkthrough.unpacked)["crishim"] == expected_rows(walkthrough.image.chain_ids)


def test_ctr_image_ls(walkthrough: Walkthrough) -> None:
    out = walkthrough.both("image", "ls")
    assert header(out["crishim"]) == header(out["containerd"])
    mine, theirs = sorted(columns(out["crishim"])), sorted(columns(out["containerd"]))
    assert mine == theirs, "\n".join(["crishim:", *map(" ".join, mine), "containerd:", *map(" ".join, theirs)])


def test_ctr_plugin_ls_grep_snapshot(walkthrough: Walkthrough, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Against a containerd with no plugin disabled (the oracle disables four snapshotters), so every row the
    seed shows has a status to compare with."""
    walkthrough.unpacked.require_pulled()
    mine = grep_plugins(walkthrough.ctrs["crishim"].out("plugin", "ls"))
    theirs = grep_plugins(plugin_ls_of_default_containerd(tmp_path_factory.mktemp("containerd-defaults")))
    listing = ["crishim:", *(f"  {t} {i} {' '.join(v)}" for (t, i), v in mine.items()),
               "containerd:", *(f"  {t} {i} {' '.join(v)}" for (t, i), v in theirs.items())]
    print("\n" + "\n".join(listing))
    differences = [f"{t} {i}: crishim={mine.get((t, i))} containerd={value}"
                   for (t, i), value in theirs.items() if mine.get((t, i)) != value]
    differences += [f"{t} {i}: only crishim lists it" for t, i in set(mine) - set(theirs) - CRISHIM_ONLY_PLUGINS]
    common = [key for key in mine if key in theirs]
    if common != [key for key in theirs if key in mine]:
        differences.append(f"order differs: crishim {common}")
    assert not differences, "\n".join(differences + listing)


def test_image_root_view_matches(walkthrough: Walkthrough, tmp_path: Path) -> None:
    walkthrough.unpacked.require_pulled()
    differences = compare_view(walkthrough.unpacked, walkthrough.image.chain_ids[-1], tmp_path)
    assert not differences, format_differences("image root (view of the top chain ID)", differences)


def test_every_layer_view_matches(walkthrough: Walkthrough, tmp_path: Path) -> None:
    walkthrough.unpacked.require_pulled()
    report = []
    for index, chain in enumerate(walkthrough.image.chain_ids[:-1]):
        differences = compare_view(walkthrough.unpacked, chain, tmp_path)
        if differences:
            report.append(format_differences(f"view of layer {index} ({chain})", differences))
    assert not report, "\n".join(report)


def test_layer_folders_match(walkthrough: Walkthrough, tmp_path: Path) -> None:
    walkthrough.unpacked.require_pulled()
    differences = compare_layer_dirs(walkthrough.unpacked, tmp_path)
    assert not differences, "\n".join(
        format_differences(f"folder of layer {i}", lines) for i, lines in differences.items())


def test_container_snapshot_and_its_overlay_mount(walkthrough: Walkthrough) -> None:
    """The seed's `ctr run ... nginx0`, as far as snapshots go: an Active snapshot keyed by the container over
    the top chain ID, listed by `ctr snapshot ls`, mounted as overlay with upperdir, workdir and every layer as a
    lowerdir (nearest first)."""
    walkthrough.unpacked.require_pulled()
    top = walkthrough.image.chain_ids[-1]
    target = f"/run/containerd/io.containerd.runtime.v2.task/default/{CONTAINER}/rootfs"
    listings, mounts = {}, {}
    try:
        for side, ctr in walkthrough.ctrs.items():
            ctr.prepare(CONTAINER, top)
            listings[side] = columns(ctr.out("snapshot", "ls"))
            mounts[side] = [normalise_snapshot_paths(line) for line in ctr.mount_commands(target, CONTAINER)]
    finally:
        for ctr in walkthrough.ctrs.values():
            ctr.remove(CONTAINER)
    assert [CONTAINER, top, "Active"] in listings["containerd"]
    assert listings["crishim"] == listings["containerd"]
    assert mounts["crishim"] == mounts["containerd"]
    assert len(mounts["containerd"]) == 1 and mounts["containerd"][0].startswith(f"mount -t overlay overlay {target}")
    assert mounts["containerd"][0].count("<snapshot-") == len(walkthrough.image.chain_ids) + 2


def normalise_snapshot_paths(line: str) -> str:
    """Snapshot folders as <snapshot-N>/, numbered by first appearance: ids are each daemon's own counter."""
    seen: dict[str, int] = {}

    def name(match: re.Match[str]) -> str:
        number = seen.setdefault(match.group(1), len(seen) + 1)
        return f"<snapshot-{number}>/"

    return SNAPSHOT_DIR.sub(name, line)
