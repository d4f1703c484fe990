"""Runtime handlers (RuntimeClass): runc by default, Debian's crun beside it, each running the containers of
the pods that name it; recursive read-only mounts where the handler's probe found them working.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.integration.test_bad_requests import refused
from tests.support.cri_configs import write_json
from tests.support.cri_env import CriEnv
from tests.support.tools import binary

HANDLERS = ("runc", "crun")


@pytest.fixture
def tree_with_submount(tmp_path: Path) -> Iterator[Path]:
    """A folder with a tmpfs mounted inside it: what a plain read-only bind leaves writable."""
    top = tmp_path / "tree"
    (top / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(top / "sub")], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", str(top / "sub")], check=True)


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_pod_names_the_runtime_that_runs_its_containers(cri: CriEnv, handler: str) -> None:
    binary(handler)
    pod_id = cri.runp(cri.pod(f"on-{handler}"), runtime=handler)
    assert cri.inspectp(pod_id)["status"]["runtimeHandler"] == handler
    container_id = cri.run(pod_id, cri.container("app"))
    assert cri.exec(container_id, "sh", "-c", "echo hello").stdout.split() == ["hello"]
    # Seen from the host: the container lives in that runtime's own root, not in the other's.
    roots = {name: cri.daemon.state / name for name in HANDLERS}
    assert (roots[handler] / container_id).is_dir()
    other = next(name for name in HANDLERS if name != handler)
    assert not (roots[other] / container_id).exists()
    cri.crictl("stop", "--timeout", "10", container_id)  # the sleeper exits 0 on SIGTERM
    assert cri.status(container_id)["exitCode"] == 0


def test_a_handler_that_cannot_run_here_is_left_out_and_refused(cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config='[runtimes.runc]\nbinary = "runc"\n[runtimes.broken]\nbinary = "/nonexistent/runc"\n')
    names = [h.name for h in cri.rpc("Status", api_pb2.StatusRequest()).runtime_handlers]
    assert names == ["", "runc"]
    before = cri.inventory()
    proc = cri.crictl("runp", "--runtime", "broken", str(_pod_file(cri, "broken")), check=False)
    assert "/nonexistent/runc: not found" in refused(proc, "FailedPrecondition")
    assert cri.inventory() == before


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_recursive_read_only_mount_is_read_only_all_the_way_down(
        cri: CriEnv, handler: str, tree_with_submount: Path) -> None:
    binary(handler)
    pod_id = cri.runp(cri.pod(f"rro-{handler}"), runtime=handler)
    source = str(tree_with_submount)
    plain = cri.run(pod_id, cri.container("plain", mounts=[
        {"container_path": "/data", "host_path": source, "readonly": True}]))
    rro = cri.run(pod_id, cri.container("rro", mounts=[
        {"container_path": "/data", "host_path": source, "readonly": True, "recursive_read_only": True}]))
    for container_id in (plain, rro):
        top = cri.exec(container_id, "busybox", "touch", "/data/top", check=False)
        assert top.returncode != 0 and "Read-only file system" in top.stderr
    # A plain read-only bind leaves the submount writable; rro does not.
    assert cri.exec(plain, "busybox", "touch", "/data/sub/from-plain").returncode == 0
    sub = cri.exec(rro, "busybox", "touch", "/data/sub/from-rro", check=False)
    assert sub.returncode != 0 and "Read-only file system" in sub.stderr
    assert sorted(p.name for p in (tree_with_submount / "sub").iterdir()) == ["from-plain"]
    mountinfo = cri.exec(rro, "busybox", "cat", "/proc/self/mountinfo").stdout
    options = {fields[4]: fields[5].split(",") for fields in (line.split() for line in mountinfo.splitlines() if line)}
    assert "ro" in options["/data"] and "ro" in options["/data/sub"]


@pytest.mark.parametrize(("mount", "message"), [
    ({"readonly": False}, "must be read-only"),
    ({"readonly": True, "propagation": api_pb2.PROPAGATION_HOST_TO_CONTAINER}, "private propagation"),
])
def test_a_recursive_read_only_mount_that_cannot_be_is_refused(
        cri: CriEnv, mount: dict[str, object], message: str) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    config = cri.container("rro", mounts=[
        {"container_path": "/data", "host_path": str(cri.workdir), "recursive_read_only": True, **mount}])
    assert message in refused(cri.create(pod_id, config, check=False), "FailedPrecondition")
    assert cri.inventory() == before


def _pod_file(cri: CriEnv, name: str) -> Path:
    return write_json(cri.configs, cri.pod(name), f"pod-{name}")
