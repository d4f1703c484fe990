"""One image pulled with crictl into crishim and into containerd, then compared through ctr on both sides:
committed snapshots (keys, parents, kinds) and the trees their views mount."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.containerd import Containerd
from tests.support.ctr_client import Ctr, SnapshotRow, layer_dirs, mounted_view
from tests.support.daemon import Crishim
from tests.support.procs import CommandError
from tests.support.tree import Tree, list_tree, tree_differences

SIDES = ("crishim", "containerd")


@dataclass
class Unpacked:
    ref: str
    chain_ids: list[str]  # computed by the test from the layers it wrote
    daemon: Crishim
    oracle: Containerd
    pulled_at_ns: int
    pull_errors: dict[str, str] = field(default_factory=dict)
    pull_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ctrs(self) -> dict[str, Ctr]:
        return {"crishim": Ctr(self.daemon.socket), "containerd": Ctr(self.oracle.socket)}

    def require_pulled(self) -> None:
        if self.pull_errors:
            raise AssertionError("pull failed:\n" + "\n".join(f"[{s}] {e}" for s, e in self.pull_errors.items()))

    def applied_window(self) -> tuple[int, int]:
        """Times written by the unpackers' clocks fall between the pulls' start and now."""
        return self.pulled_at_ns, time.time_ns() + 1_000_000_000


def pull_both(ref: str, chains: list[str], daemon: Crishim, oracle: Containerd) -> Unpacked:
    """crictl pull into both; a failed pull is recorded (the tests report it) rather than raised."""
    unpacked = Unpacked(ref, chains, daemon, oracle, time.time_ns())
    for side, pull in (("containerd", oracle.crictl_client.run), ("crishim", daemon.crictl)):
        started = time.monotonic()
        try:
            pull("pull", ref)
        except CommandError as error:
            unpacked.pull_errors[side] = error.proc.stderr.strip() or str(error)
        unpacked.pull_seconds[side] = time.monotonic() - started
    return unpacked


def snapshot_rows(unpacked: Unpacked) -> dict[str, list[SnapshotRow]]:
    return {side: sorted(ctr.snapshots(), key=lambda r: r.key) for side, ctr in unpacked.ctrs.items()}


def expected_rows(chains: list[str]) -> list[SnapshotRow]:
    return sorted((SnapshotRow(c, chains[i - 1] if i else "", "Committed") for i, c in enumerate(chains)),
                  key=lambda r: r.key)


def view_trees(unpacked: Unpacked, chain: str, workdir: Path) -> dict[str, Tree]:
    """Mount each side's View of ``chain`` read-only and list it; views are gone again on return."""
    trees = {}
    for side, ctr in unpacked.ctrs.items():
        with mounted_view(ctr, chain, workdir / f"{side}-view"):
            trees[side] = list_tree(workdir / f"{side}-view", unpacked.applied_window())
    return trees


def compare_view(unpacked: Unpacked, chain: str, workdir: Path) -> list[str]:
    trees = view_trees(unpacked, chain, workdir)
    return tree_differences(trees["crishim"], trees["containerd"])


def compare_layer_dirs(unpacked: Unpacked, workdir: Path) -> dict[int, list[str]]:
    """Each layer's own folder (the overlay lowerdirs of the top view, as ctr reports them), side by side:
    whiteout devices and opaque xattrs are visible here, and nothing an upper layer hides is masked."""
    top = unpacked.chain_ids[-1]
    folders: dict[str, list[str]] = {}
    trees: dict[str, list[Tree]] = {}
    for side, ctr in unpacked.ctrs.items():
        with mounted_view(ctr, top, workdir / f"{side}-top") as mounts:
            folders[side] = layer_dirs(mounts)
            trees[side] = [list_tree(Path(folder), unpacked.applied_window()) for folder in folders[side]]
    assert [len(folders[s]) for s in SIDES] == [len(unpacked.chain_ids)] * 2, folders
    differences = {}
    for index, (mine, theirs) in enumerate(zip(trees["crishim"], trees["containerd"], strict=True)):
        lines = tree_differences(mine, theirs)
        if lines:
            differences[index] = lines
    return differences


def format_differences(title: str, lines: list[str], limit: int = 200) -> str:
    shown = lines[:limit]
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{title} ({len(lines)} differing paths):\n  " + "\n  ".join(shown) + more
