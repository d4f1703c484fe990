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
from tests.support.terminal import Terminal


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


def test_run_with_a_terminal_is_interactive(crishim: Crishim, test_images: dict[str, PushedImage],
                                            name: str) -> None:
    session = Terminal([str(python_executable()), "-m", "cri", "-a", str(crishim.socket), "run", "-t", "--rm",
                        "--net", "host", test_images["oci"].ref, name, "/bin/busybox", "sh"], rows=33, cols=101)
    try:
        # The shell printed its prompt before the terminal was attached: it answers what is typed next.
        session.send("stty size; echo $((6*7))\r")
        session.expect("33 101")
        session.expect("42")
        session.resize(rows=21, cols=77)
        session.send("stty size\r")
        session.expect("21 77")
        session.send("exit 4\r")
        assert session.wait() == 4
    finally:
        session.close()
    # --rm: the pod is gone with its container.
    assert crishim.crictl("pods", "-q", "--name", name).stdout.strip() == ""


def test_stop_and_rm_take_what_run_made(crishim: Crishim, test_images: dict[str, PushedImage], name: str) -> None:
    proc = cli(crishim, "run", "-d", "--net", "host", test_images["oci"].ref, name, "/bin/busybox", "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    container_id = proc.stdout.strip()
    pod_id = crishim.crictl("pods", "-q", "--name", name).stdout.strip()
    stopped = cli(crishim, "stop", name)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, pod_id)
    assert crishim.crictl_json("inspect", container_id)["status"]["state"] == "CONTAINER_EXITED"
    removed = cli(crishim, "rm", name)
    assert (removed.returncode, removed.stdout.strip()) == (0, pod_id)
    assert crishim.crictl("pods", "-q").stdout.strip() == ""
    again = cli(crishim, "rm", name)
    assert again.returncode == 1 and f"no pod made by run for '{name}'" in again.stderr
