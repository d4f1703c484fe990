"""Snapshot removal under kill -9, and on a node a crash already damaged: idempotent, never wedged."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from snapshotters.gc import prune
from snapshotters.native import NativeSnapshotter

REPO = Path(__file__).resolve().parents[2]

_KILLED_IN_REMOVE = """
import os, signal, sys
from pathlib import Path
import snapshotters.local as local
from snapshotters.native import NativeSnapshotter

real_rename = os.rename

def rename_then_die(src, dst):
    real_rename(src, dst)
    if Path(dst).name.startswith("rm-"):
        os.kill(os.getpid(), signal.SIGKILL)

local.os.rename = rename_then_die
NativeSnapshotter(Path(sys.argv[1])).open().remove("layer-2")
"""


def _two_layers(root: Path) -> NativeSnapshotter:
    sn = NativeSnapshotter(root).open()
    for name, parent in (("layer-1", ""), ("layer-2", "layer-1")):
        sn.prepare(f"extract-{name}", parent)
        (Path(sn.apply_dir(f"extract-{name}")) / name).write_text(name)
        sn.commit(name, f"extract-{name}")
    return sn


def _records_and_folders_agree(sn: NativeSnapshotter) -> None:
    with sn._store.transaction() as tx:
        ids = {str(i) for i in tx.ids()}
    folders = {p.name for p in sn.snapshots_dir.iterdir()}
    assert ids == folders, f"records {sorted(ids)} vs folders {sorted(folders)}"


def test_kill_9_in_remove_leaves_records_and_folders_in_agreement(tmp_path: Path) -> None:
    _two_layers(tmp_path).close()
    child = subprocess.run([sys.executable, "-c", _KILLED_IN_REMOVE, str(tmp_path)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with closing(NativeSnapshotter(tmp_path).open()) as sn:  # a restart: cleanup() runs
        _records_and_folders_agree(sn)
        prune(sn, set())
        names: list[str] = []
        sn.walk(lambda info: names.append(info.name))
        assert names == []
        _records_and_folders_agree(sn)


def test_removing_a_snapshot_whose_folder_is_gone_succeeds_and_prune_goes_on(tmp_path: Path,
                                                                            request: pytest.FixtureRequest) -> None:
    sn = _two_layers(tmp_path)
    request.addfinalizer(sn.close)
    with sn._store.transaction() as tx:
        top = tx.get("layer-2").id
    shutil.rmtree(sn.snapshots_dir / str(top))
    assert prune(sn, set()) == ["layer-2", "layer-1"]
    names: list[str] = []
    sn.walk(lambda info: names.append(info.name))
    assert names == []
    _records_and_folders_agree(sn)
