"""Unpacked trees, crishim against containerd 1.6, for images with unusual layer content.

Each image is pulled with crictl into a fresh crishim and into the reset containerd oracle. Then, through ctr
on both sockets: the committed snapshots must be the image's chain IDs with the same parents and kinds, and
read-only View mounts must show identical trees (types, modes with setuid/setgid/sticky, owners, sizes,
content hashes, symlink targets, device numbers, xattrs, hard-link groups, times). The layers' own folders
(where whiteouts and opaque markers are stored) are compared too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containerd import Containerd
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
from tests.support.special_images import RECIPES, SpecialImage

# Views of every chain for small images; for many-layer images a sample, the top included.
ALL_CHAINS_UP_TO = 16
SAMPLE_STEP = 20


@pytest.fixture(scope="module", params=list(RECIPES))
def unpacked(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    containerd: Containerd,
    registry: Registry,
    auth_registry: Registry,
    special_images: dict[str, SpecialImage],
) -> Iterator[Unpacked]:
    image = special_images[request.param]
    containerd.reset()
    daemon = launch(tmp_path_factory.mktemp(f"crishim-{image.name}"), [registry.host, auth_registry.host])
    failures_before = request.session.testsfailed
    try:
        yield pull_both(image.ref, image.chain_ids, daemon, containerd)
    finally:
        if request.session.testsfailed > failures_before:
            print(f"\n--- crishim log tail ({daemon.log_path}) ---\n{daemon.log_tail()}")
        daemon.cleanup()


def test_both_pull_the_image(unpacked: Unpacked) -> None:
    unpacked.require_pulled()


def test_committed_snapshots_are_the_chain_ids(unpacked: Unpacked) -> None:
    unpacked.require_pulled()
    rows = snapshot_rows(unpacked)
    assert rows["containerd"] == expected_rows(unpacked.chain_ids), "containerd's snapshots are not the chain IDs"
    assert rows["crishim"] == rows["containerd"]


def test_image_root_view_matches(unpacked: Unpacked, tmp_path: Path) -> None:
    unpacked.require_pulled()
    differences = compare_view(unpacked, unpacked.chain_ids[-1], tmp_path)
    assert not differences, format_differences("image root (view of the top chain ID)", differences)


def test_every_layer_view_matches(unpacked: Unpacked, tmp_path: Path) -> None:
    unpacked.require_pulled()
    chains = unpacked.chain_ids[:-1]
    if len(chains) > ALL_CHAINS_UP_TO:
        chains = chains[::SAMPLE_STEP]
    report = []
    for chain in chains:
        index = unpacked.chain_ids.index(chain)
        differences = compare_view(unpacked, chain, tmp_path)
        if differences:
            report.append(format_differences(f"view of layer {index} ({chain})", differences))
    assert not report, "\n".join(report)


def test_layer_folders_match(unpacked: Unpacked, tmp_path: Path) -> None:
    unpacked.require_pulled()
    differences = compare_layer_dirs(unpacked, tmp_path)
    assert not differences, "\n".join(
        format_differences(f"folder of layer {i} ({unpacked.chain_ids[i]})", lines)
        for i, lines in differences.items())
