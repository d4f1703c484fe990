"""containerd 1.6 using crishim as its snapshotter, through `[proxy_plugins.crishim]` on crishim's socket.

A second containerd (its own root, state and socket) pulls and unpacks an image into crishim's `crishim`
snapshotter and runs a container from it; crishim then holds the layers under the keys containerd's metadata
layer gave them (`<namespace>/<n>/<chain ID>`), and containerd's garbage collector removes them through crishim.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containerd import Containerd, start_containerd
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.mounts import mounts_under, overlay_capable_dir
from tests.support.procs import run
from tests.support.tools import binary, require_root

PROXY = "crishim"
NAMESPACE = "default"


def proxy_config(socket: Path) -> str:
    return f'\n[proxy_plugins.{PROXY}]\n  type = "snapshot"\n  address = {json.dumps(str(socket))}\n'


@pytest.fixture
def proxied(crishim: Crishim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd whose `crishim` snapshotter is the crishim daemon under test."""
    require_root("containerd with a proxy snapshotter")
    base = overlay_capable_dir([tmp_path_factory.getbasetemp(), Path("/var/tmp")])
    if base is None:
        pytest.skip("no directory where an overlay mount works")
    workdir = Path(tempfile.mkdtemp(prefix="containerd-proxy-", dir=base))
    daemon = start_containerd(workdir, [], extra_config=proxy_config(crishim.socket))
    yield daemon
    run(binary("ctr"), "-a", daemon.socket, "-n", NAMESPACE, "tasks", "kill", "-s", "SIGKILL", "test-ctr",
        check=False)
    run(binary("ctr"), "-a", daemon.socket, "-n", NAMESPACE, "containers", "rm", "test-ctr", check=False)
    daemon.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def ctr(socket: Path, *args: str, namespace: str = NAMESPACE) -> str:
    return run(binary("ctr"), "-a", socket, "-n", namespace, *args, timeout=180).stdout


def snapshots(socket: Path, namespace: str = NAMESPACE) -> dict[str, tuple[str, str]]:
    """KEY -> (PARENT, KIND) of `ctr snapshots --snapshotter crishim ls`."""
    lines = ctr(socket, "snapshots", "--snapshotter", PROXY, "ls", namespace=namespace).splitlines()[1:]
    rows = [line.split() for line in lines if line.strip()]
    return {row[0]: (row[1] if len(row) == 3 else "", row[-1]) for row in rows}


def test_containerd_pulls_and_runs_on_crishim(
    crishim: Crishim, proxied: Containerd, test_images: dict[str, PushedImage]
) -> None:
    image = test_images["oci"]
    plugins = ctr(proxied.socket, "plugins", "ls", f"id=={PROXY}")
    assert "io.containerd.snapshotter.v1" in plugins and " ok" in plugins, plugins

    ctr(proxied.socket, "images", "pull", "--plain-http", "--snapshotter", PROXY, image.ref)
    # containerd's view (its metadata layer, chain IDs) and crishim's (containerd's backend keys).
    theirs = snapshots(proxied.socket)
    mine = snapshots(crishim.socket)
    assert len(theirs) == len(image.layer_digests) and all(kind == "Committed" for _, kind in theirs.values())
    assert _as_chain_ids(mine) == theirs, f"crishim holds {mine}, containerd shows {theirs}"
    assert all(key.startswith(f"{NAMESPACE}/") for key in mine)
    # The CRI's own snapshotter is a separate key space: nothing of containerd's lands there.
    assert not [key for key in snapshots_of(crishim, "overlayfs") if key.startswith(f"{NAMESPACE}/")]

    output = ctr(proxied.socket, "run", "--rm", "--snapshotter", PROXY, image.ref, "test-ctr",
                 "/bin/busybox", "echo", "hello")
    assert output.strip() == "hello"
    # --rm removed the container and its snapshot from containerd's metadata; crishim's copy of the active
    # snapshot goes when containerd's garbage collector runs, at the latest with the image removal below.
    assert snapshots(proxied.socket) == theirs
    # One listing: containerd's collector may remove the active snapshot between two.
    now = set(snapshots(crishim.socket))
    assert {key for key in now - set(mine) if not key.endswith("/test-ctr")} == set()
    assert not mounts_under(crishim.root / "io.containerd.snapshotter.v1.crishim")

    # containerd's garbage collector removes the layers through crishim once the image is gone.
    ctr(proxied.socket, "images", "rm", "--sync", image.ref)
    assert snapshots(proxied.socket) == {}
    assert snapshots(crishim.socket) == {}


def snapshots_of(crishim: Crishim, snapshotter: str) -> list[str]:
    text = ctr(crishim.socket, "snapshots", "--snapshotter", snapshotter, "ls", namespace="k8s.io")
    return [line.split()[0] for line in text.splitlines()[1:] if line.strip()]


def _as_chain_ids(backend: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """containerd's backend keys `<namespace>/<n>/<name>` back to the names its metadata layer shows."""
    names = {key: key.split("/", 2)[2] for key in backend}
    return {names[key]: (names.get(parent, parent), kind) for key, (parent, kind) in backend.items()}
