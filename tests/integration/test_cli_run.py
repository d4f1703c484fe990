"""``crishim run``: the seed's `ctr run`, through the CRI; the container's Active snapshot shows in `snapshot ls`."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.commands.run import LOG_ROOT
from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage


@pytest.fixture
def name(crishim: Crishim) -> Iterator[str]:
    name = f"run-{secrets.token_hex(4)}"
    yield name
    crishim.crictl("rmp", "-af", check=False)
    shutil.rmtree(LOG_ROOT / name, ignore_errors=True)


def cli(daemon: Crishim, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python_executable()), "-m", "cri", "-a", str(daemon.socket), *args],
                          capture_output=True, text=True, timeout=120)


def test_run_shows_output_and_exit_code(crishim: Crishim, test_images: dict[str, PushedImage], name: str) -> None:
    proc = cli(crishim, "run", "--net", "host", test_images["oci"].ref, name,
               "/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_run_detached_leaves_an_active_snapshot(crishim: Crishim, test_images: dict[str, PushedImage],
                                                name: str) -> None:
    image = test_images["oci"]
    proc = cli(crishim, "run", "-d", "--net", "host", image.ref, name, "/bin/busybox", "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    container_id = proc.stdout.strip()
    rows = [line.split() for line in cli(crishim, "snapshot", "ls").stdout.splitlines()[1:]]
    top = crishim.crictl_json("inspecti", image.ref)["info"]["chainID"]
    assert [container_id, top, "Active"] in rows
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"/io.containerd.runtime.v2.task/k8s.io/{container_id}/rootfs" in mounts
