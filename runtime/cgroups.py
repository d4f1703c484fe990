"""The cgroup drivers: where a container's cgroup is and who makes it, as kubelet's driver of the same name.

``cgroupfs``: runc makes ``<pod's cgroup parent>/<container id>`` in every hierarchy itself (``/<namespace>/<id>``
for a pod without a parent). ``systemd``: runc (``--systemd-cgroup``) asks systemd, over D-Bus, for a transient
scope ``cri-containerd-<id>.scope`` in the pod's slice, whose OCI cgroupsPath is ``<slice>:cri-containerd:<id>``
as containerd writes it; kubelet names a pod's slice by its QoS class and uid
(``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice``), and a pod without a parent
goes to ``system.slice``. Either way a slice or a cgroup parent is a folder of the same path in each hierarchy,
which is where a pod's usage is read.
"""

from __future__ import annotations

import contextlib
import enum
import posixpath
from pathlib import Path

from errdefs import FailedPrecondition, InvalidArgument

__all__ = ["CgroupDriver", "cgroups_path", "expand_slice", "parent_folder", "require", "validate_parent"]

SCOPE_PREFIX = "cri-containerd"
DEFAULT_SLICE = "system.slice"
_SLICE = ".slice"
# Present while systemd is the init system (sd_booted(3)).
_SYSTEMD_RUNNING = Path("/run/systemd/system")


class CgroupDriver(enum.StrEnum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


def require(driver: CgroupDriver) -> None:
    """Refuse a driver this host cannot serve: systemd's needs systemd as init."""
    if driver == CgroupDriver.SYSTEMD and not _SYSTEMD_RUNNING.is_dir():
        raise FailedPrecondition(f'cgroup_driver = "systemd" needs systemd as the init system ({_SYSTEMD_RUNNING} '
                                 'is missing): use "cgroupfs" on this host')


def validate_parent(driver: CgroupDriver, parent: str) -> None:
    """A pod's cgroup parent fits the driver: a slice (a path of them, or one name) under systemd's."""
    if driver == CgroupDriver.SYSTEMD and parent:
        expand_slice(posixpath.basename(parent))
    elif ".." in parent.split("/"):
        raise InvalidArgument(f"cgroup parent {parent!r} must not climb out of the cgroup tree")


def cgroups_path(driver: CgroupDriver, parent: str, container_id: str, namespace: str) -> str:
    """The OCI spec's ``linux.cgroupsPath`` of a container whose pod has ``parent``."""
    if driver == CgroupDriver.SYSTEMD:
        return f"{posixpath.basename(parent) or DEFAULT_SLICE}:{SCOPE_PREFIX}:{container_id}"
    if not parent:
        return posixpath.join("/", namespace, container_id)
    return posixpath.normpath(posixpath.join(parent, container_id))


def parent_folder(driver: CgroupDriver, parent: str) -> str:
    """Where ``parent`` is in each hierarchy. systemd places a slice by its name alone, in the chain of slices
    the name implies, whatever path it was given with (kubelet gives exactly that chain); a parent that is no
    slice is a pod's from before the driver changed, still at its cgroupfs path."""
    if driver == CgroupDriver.SYSTEMD and parent.endswith(_SLICE):
        with contextlib.suppress(InvalidArgument):
            return expand_slice(posixpath.basename(parent))
    return parent


def expand_slice(name: str) -> str:
    """``a-b-c.slice`` → ``/a.slice/a-b.slice/a-b-c.slice``, systemd's rule for where a slice is nested."""
    stem = name.removesuffix(_SLICE)
    if stem == name or not stem or "/" in name:
        raise InvalidArgument(f"cgroup parent {name!r} is not a systemd slice (NAME.slice), which the systemd "
                              "cgroup driver needs")
    if stem == "-":
        return "/"
    parts = stem.split("-")
    if "" in parts:
        raise InvalidArgument(f"cgroup parent {name!r}: a slice name has no empty part between dashes")
    return "".join(f"/{'-'.join(parts[:depth])}{_SLICE}" for depth in range(1, len(parts) + 1))
