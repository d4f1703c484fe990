"""Pods in their own user namespace (``hostUsers: false``): the mapping seen inside, the ids files get on the
host, and the requests kubelet never sends refused; with runc and with crun, which both join the pod's pinned
user namespace and get a root filesystem crishim made of idmapped layers.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.integration.test_bad_requests import refused
from tests.support.cri_configs import write_json
from tests.support.cri_env import CriEnv
from tests.support.tools import binary

HOST_ID, SIZE = 200000, 65536
MAPPING = [{"container_id": 0, "host_id": HOST_ID, "length": SIZE}]


def _userns_pod(cri: CriEnv, name: str, **userns: Any) -> dict[str, Any]:
    options = {"mode": api_pb2.NamespaceMode.POD, "uids": MAPPING, "gids": MAPPING, **userns}
    config = cri.pod(name)
    config["linux"]["security_context"]["namespace_options"] = {"userns_options": options}
    return config


def test_status_reports_user_namespaces_where_the_probe_passed(cri: CriEnv) -> None:
    handlers = {h.name: h.features.user_namespaces for h in cri.rpc("Status", api_pb2.StatusRequest()).runtime_handlers}
    assert handlers == {"": True, "runc": True, "crun": True}


@pytest.mark.parametrize("handler", ["runc", "crun"])
def test_a_pod_in_its_own_user_namespace(cri: CriEnv, handler: str) -> None:
    binary(handler)
    pod_id = cri.runp(_userns_pod(cri, f"userns-{handler}"), runtime=handler)
    container_id = cri.run(pod_id, cri.container("app"))
    inside = cri.exec(container_id, "busybox", "cat", "/proc/self/uid_map").stdout.split()
    assert inside == ["0", str(HOST_ID), str(SIZE)]
    assert cri.exec(container_id, "busybox", "id", "-u").stdout.split() == ["0"]
    # The image's files are root's inside, through the idmapped layers...
    assert cri.exec(container_id, "busybox", "stat", "-c", "%u:%g", "/bin/busybox").stdout.split() == ["0:0"]
    cri.exec(container_id, "busybox", "sh", "-c", "echo hi > /written")
    # ...and what the container writes lands on the host's disk with the mapped ids.
    pid = cri.container_pid(container_id)
    assert os.stat(f"/proc/{pid}/root/bin/busybox").st_uid == HOST_ID
    written = _upper_dir(cri, container_id) / "written"
    assert (written.stat().st_uid, written.stat().st_gid) == (HOST_ID, HOST_ID)
    assert written.read_text() == "hi\n"
    # The container is in the pod's pinned user namespace, which owns the pod's network namespace.
    userns = os.stat(cri.daemon.state / "userns" / pod_id).st_ino
    assert os.stat(f"/proc/{pid}/ns/user").st_ino == userns
    assert _owner(Path(f"/proc/{pid}/ns/net")) == userns


def test_a_volume_asking_for_the_pods_mapping_is_an_idmapped_mount(cri: CriEnv, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "from-host").write_text("host\n")  # root's on the host, 0644, in a folder of root's, 0755
    pod_id = cri.runp(_userns_pod(cri, "userns-volume"))
    mapped = cri.run(pod_id, cri.container("mapped", mounts=[
        {"container_path": "/vol", "host_path": str(volume), "uidMappings": MAPPING, "gidMappings": MAPPING}]))
    plain = cri.run(pod_id, cri.container("plain", mounts=[{"container_path": "/vol", "host_path": str(volume)}]))
    stat = ["busybox", "stat", "-c", "%u:%g", "/vol/from-host"]
    assert cri.exec(mapped, *stat).stdout.split() == ["0:0"]
    assert cri.exec(plain, *stat).stdout.split() == ["65534:65534"]  # the host's root is nobody in there
    denied = cri.exec(plain, "busybox", "touch", "/vol/from-plain", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    cri.exec(mapped, "busybox", "touch", "/vol/from-mapped")
    # Through the idmapped mount the container's root writes as the volume's owner, the host's root.
    assert (volume / "from-mapped").stat().st_uid == 0
    # Nothing of the staging is left on the host once the container runs.
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "idmapped-volumes" in line]
    other = [{"container_id": 0, "host_id": HOST_ID + SIZE, "length": SIZE}]
    before = cri.inventory()
    bad = cri.container("other", mounts=[
        {"container_path": "/vol", "host_path": str(volume), "uidMappings": other, "gidMappings": other}])
    assert "differ from those of the pod" in refused(cri.create(pod_id, bad, check=False), "InvalidArgument")
    assert cri.inventory() == before



def test_a_file_mounted_with_the_pods_mapping(cri: CriEnv, tmp_path: Path) -> None:
    """kubelet mounts its /etc/hosts file for the pod into every container, idmapped in such a pod."""
    hosts = tmp_path / "etc-hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.7 from-kubelet\n")
    pod_id = cri.runp(_userns_pod(cri, "userns-file"))
    ctr = cri.run(pod_id, cri.container("hosts", mounts=[
        {"container_path": "/etc/hosts", "host_path": str(hosts), "uidMappings": MAPPING, "gidMappings": MAPPING}]))
    assert "from-kubelet" in cri.exec(ctr, "busybox", "cat", "/etc/hosts").stdout
    assert cri.exec(ctr, "busybox", "stat", "-c", "%u:%g", "/etc/hosts").stdout.split() == ["0:0"]
    assert hosts.is_file()

def test_an_image_volume_in_such_a_pod_is_refused(cri: CriEnv) -> None:
    # An overlayfs mount (the image's shared view) cannot itself be idmapped: EINVAL from mount_setattr.
    pod_id = cri.runp(_userns_pod(cri, "userns-image"))
    before = cri.inventory()
    volume = [{"container_path": "/img", "image": {"image": cri.image.ref}}]
    proc = cri.create(pod_id, cri.container("app", mounts=volume), check=False)
    assert "image volumes are not supported" in refused(proc, "FailedPrecondition")
    assert cri.inventory() == before


@pytest.mark.parametrize(("userns", "message"), [
    ({"uids": MAPPING * 2}, "exactly one uid mapping"),
    ({"uids": [{"container_id": 1, "host_id": HOST_ID, "length": SIZE}]}, "must map container id 0"),
    ({"mode": api_pb2.NamespaceMode.CONTAINER}, "CONTAINER is not supported"),
    ({"mode": api_pb2.NamespaceMode.TARGET}, "TARGET is not supported"),
])
def test_mappings_kubelet_never_sends_are_refused(cri: CriEnv, userns: dict[str, Any], message: str) -> None:
    before = cri.inventory()
    path = write_json(cri.configs, _userns_pod(cri, "bad-userns", **userns))
    proc = cri.crictl("runp", "--runtime", "crun", str(path), check=False)
    assert message in refused(proc, "InvalidArgument")
    assert cri.inventory() == before


def test_a_handler_without_user_namespaces_refuses_such_a_pod(cri_factory: Callable[..., CriEnv]) -> None:
    cri = cri_factory(config='[runtimes.runc]\nbinary = "runc"\n[runtimes.runc.features]\nuser_namespaces = false\n')
    assert not cri.rpc("Status", api_pb2.StatusRequest()).runtime_handlers[0].features.user_namespaces
    before = cri.inventory()
    path = write_json(cri.configs, _userns_pod(cri, "on-runc"))
    proc = cri.crictl("runp", str(path), check=False)
    assert "user_namespaces false" in refused(proc, "FailedPrecondition")
    assert cri.inventory() == before


def _owner(namespace: Path) -> int:
    """The inode of the user namespace owning a namespace (ioctl NS_GET_USERNS)."""
    fd = os.open(namespace, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, 0xB701)
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino
    finally:
        os.close(owner)


def _upper_dir(cri: CriEnv, container_id: str) -> Path:
    rootfs = cri.daemon.state / "io.containerd.runtime.v2.task" / "k8s.io" / container_id / "rootfs"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(rootfs):
            options = line.split(" - ", 1)[1].split()[2].split(",")
            return Path(next(o.removeprefix("upperdir=") for o in options if o.startswith("upperdir=")))
    raise AssertionError(f"{rootfs} is not mounted")
