"""``ctr version``'s revision: the commit of the source tree, from a clone or a linked worktree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cri.containerd.version import source_revision


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("packed", [False, True])
def test_revision_of_a_clone_and_of_its_worktree(tmp_path: Path, packed: bool) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "f").write_text("x")
    _git(repo, "add", "f")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    _git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"))
    if packed:
        _git(repo, "pack-refs", "--all")
    assert source_revision(repo) == _git(repo, "rev-parse", "HEAD")
    assert source_revision(tmp_path / "wt") == _git(tmp_path / "wt", "rev-parse", "HEAD")
    assert source_revision(tmp_path) == ""
