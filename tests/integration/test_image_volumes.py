"""Image volumes: an image's root filesystem mounted read-only into containers, one shared View snapshot per
image, released with the last container using it, and the image kept while any does.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_bad_requests import refused
from tests.support.cri_env import CriEnv


def _volume(cri: CriEnv, sub_path: str = "") -> list[dict[str, object]]:
    return [{"container_path": "/img", "image": {"image": cri.image.ref}, "image_sub_path": sub_path}]


def _views(cri: CriEnv) -> list[str]:
    return [row.key for row in cri.ctr.snapshots() if row.kind == "View"]


def _mounted(cri: CriEnv) -> list[str]:
    folder = str(cri.daemon.state / "image-volumes")
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(folder + "/")]


def test_an_image_mounted_read_only_into_containers_and_released_with_the_last(cri: CriEnv) -> None:
    pod_id = cri.runp()
    whole = cri.run(pod_id, cri.container("whole", mounts=_volume(cri)))
    part = cri.run(pod_id, cri.container("part", mounts=_volume(cri, "bin")))
    assert cri.exec(whole, "busybox", "ls", "/img/bin/busybox").returncode == 0
    assert cri.exec(part, "busybox", "ls", "/img/busybox").returncode == 0
    denied = cri.exec(whole, "busybox", "touch", "/img/new", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    # One view for both, mounted once on the host.
    image_id = cri.json("inspecti", cri.image.ref)["status"]["id"]
    assert _views(cri) == [f"image-volume-{image_id}"]
    assert _mounted(cri) == [str(cri.daemon.state / "image-volumes" / image_id.removeprefix("sha256:"))]
    # In use as a volume, the image stays.
    assert "in use as a volume" in refused(cri.crictl("rmi", cri.image.ref, check=False), "FailedPrecondition")
    cri.crictl("rm", "-f", whole)
    assert len(_mounted(cri)) == 1 and len(_views(cri)) == 1
    cri.crictl("rm", "-f", part)
    assert _mounted(cri) == [] and _views(cri) == []


def test_an_image_sub_path_must_stay_inside_the_image(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    for sub_path in ("../../etc", "/etc", "no-such-folder"):
        proc = cri.create(pod_id, cri.container("escape", mounts=_volume(cri, sub_path)), check=False)
        refused(proc, "InvalidArgument")
    assert cri.inventory() == before and _mounted(cri) == [] and _views(cri) == []


def test_an_image_not_pulled_is_not_found(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    mounts = [{"container_path": "/img", "image": {"image": "registry.invalid/none:1"}}]
    refused(cri.create(pod_id, cri.container("missing", mounts=mounts), check=False), "NotFound")
    assert cri.inventory() == before


def test_a_view_no_container_uses_is_released_at_start(cri: CriEnv) -> None:
    # What a daemon killed between removing a container and releasing its image volume leaves.
    image = cri.json("inspecti", cri.image.ref)
    cri.ctr.view(f"image-volume-{image['status']['id']}", _top_chain_id(cri))
    assert len(_views(cri)) == 1
    cri.daemon.restart()
    assert _views(cri) == []


def _top_chain_id(cri: CriEnv) -> str:
    """The committed snapshot no other has as its parent: the image's top layer."""
    rows = [row for row in cri.ctr.snapshots() if row.kind == "Committed"]
    parents = {row.parent for row in rows}
    (top,) = [row.key for row in rows if row.key not in parents]
    return top
