"""containerd.services.version.v1: which crishim answers (``ctr version``).

``version`` is the package version; ``revision`` the git commit of the source
tree crishim runs from, or "" when it was installed without one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cri
from cri.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc

__all__ = ["VersionService", "revision", "source_revision"]

_SOURCE_TREE = Path(__file__).resolve().parents[2]


class VersionService(version_pb2_grpc.VersionServicer):
    def Version(self, request: Any, context: Any) -> version_pb2.VersionResponse:
        return version_pb2.VersionResponse(version=cri.__version__, revision=revision())


def revision() -> str:
    """The commit of the source tree this crishim runs from, or ""."""
    return source_revision(_SOURCE_TREE)


@functools.cache
def source_revision(tree: Path) -> str:
    """The commit ``tree``'s git checkout is at, read from ``.git`` without running git.

    In a linked worktree ``.git`` is a file naming the worktree's own git folder, whose HEAD is the one to
    read, while refs live in the repository's common folder.
    """
    git = tree / ".git"
    try:
        if git.is_file():
            git = (tree / git.read_text().strip().removeprefix("gitdir: ")).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").exists() else git
        ref = head.removeprefix("ref: ")
        loose = common / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        pass
    return ""
