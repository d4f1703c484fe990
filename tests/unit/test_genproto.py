"""The committed stubs under cri/api are exactly what script/genproto.py generates today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENPROTO = REPO / "script" / "genproto.py"
# What generation reads besides the Go module proxy: containerd's API protos and gogo.proto
# (to compile the unmodified originals for the wire-format comparison).
PROTO_SOURCES = {
    Path("/usr/share/gocode/src/github.com/containerd/containerd/api"): "golang-github-containerd-containerd-dev",
    Path("/usr/share/gocode/src/github.com/gogo/protobuf/gogoproto"): "golang-github-gogo-protobuf-dev",
}


def _skip_without_sources() -> None:
    if shutil.which("go") is None:
        reason = "go is not installed: genproto downloads the CRI proto with `go mod download`"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    for path, package in PROTO_SOURCES.items():
        if not path.is_dir():
            reason = f"{path} is missing (Debian package {package})"
            print(f"skipped: {reason}")
            pytest.skip(reason)


def test_stubs_match_a_fresh_generation() -> None:
    _skip_without_sources()
    result = subprocess.run([sys.executable, GENPROTO, "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stubs drifted; run `make proto`:\n{result.stdout}{result.stderr}"


def test_containerd_stubs_keep_containerd_names() -> None:
    # ctr calls fully qualified methods; the copies at cri/api/containerd must keep containerd's packages.
    from cri.api.containerd.services.content.v1 import content_pb2
    from cri.api.containerd.services.snapshots.v1 import snapshots_pb2

    assert content_pb2.DESCRIPTOR.services_by_name["Content"].full_name == "containerd.services.content.v1.Content"
    assert snapshots_pb2.Info.DESCRIPTOR.full_name == "containerd.services.snapshots.v1.Info"
    assert not [d.name for d in content_pb2.DESCRIPTOR.dependencies if "gogo" in d.name]
