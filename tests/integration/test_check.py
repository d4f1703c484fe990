"""``crishim check``: silent on a healthy node (pods and containers running), precise on a damaged one,
and ``--repair`` leaves it healthy."""

from __future__ import annotations

import subprocess

from tests.support.cri_env import CriEnv
from tests.support.daemon import Crishim, python_executable
from tests.support.images import PushedImage

OVERLAY = "io.containerd.snapshotter.v1.overlayfs"


def check(daemon: Crishim, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python_executable()), "-m", "cri", "check", "--root", str(daemon.root),
                           "--state", str(daemon.state), *extra], capture_output=True, text=True, timeout=120)


def kinds(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line.split("\t")[0] for line in proc.stdout.splitlines())


def test_a_node_running_pods_and_containers_has_no_finding(cri: CriEnv) -> None:
    pod_id = cri.runp()
    running = cri.run(pod_id, cri.container("running"))
    cri.wait_state(running, "CONTAINER_RUNNING")
    cri.create(pod_id, cri.container("created"))
    proc = check(cri.daemon)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr


def test_damage_is_found_and_repaired(crishim: Crishim, test_images: dict[str, PushedImage]) -> None:
    image = test_images["oci"]
    crishim.crictl("pull", image.ref)
    assert check(crishim).returncode == 0
    crishim.stop()
    layer = image.layer_digests[0]
    crishim.blob_path(layer).unlink()  # a record whose blob is gone
    snapshots = crishim.root / OVERLAY / "snapshots"
    (snapshots / "999").mkdir()  # a folder no record owns
    (crishim.blob_path(image.config_digest).parent / ("0" * 64)).write_bytes(b"stray")  # a blob nobody records
    found = check(crishim)
    assert found.returncode == 1
    assert kinds(found) == ["blob-unreferenced", "content-without-blob", "snapshot-folder-unowned"], found.stdout
    assert layer in found.stdout
    repaired = check(crishim, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert check(crishim).returncode == 0
    assert not (snapshots / "999").exists()
    # The repaired node works: the image pulls again and the node stays consistent.
    crishim.start()
    crishim.crictl("pull", image.ref)
    assert [i["id"] for i in crishim.images()] == [image.config_digest]
    after = check(crishim)
    assert (after.returncode, after.stdout) == (0, ""), after.stdout
