"""User namespaces for pods (``hostUsers: false``): the pod's id mapping, and idmapped mounts of what its
containers see.

A pod in its own user namespace gets that namespace pinned like its others, created first so that its
network, IPC, UTS and PID namespaces belong to it (runtime/namespaces.py). A container's root filesystem is
an overlay whose image layers are idmapped mounts (mount_setattr(MOUNT_ATTR_IDMAP) with the pod's user
namespace): a file the image gives to root shows as the pod's root inside. The writable layer is not
idmapped but owned by the host ids of the pod's root, so what a container writes lands on the host with the
mapped ids. runc 1.1 and crun 1.8 need do nothing for that: they get a root filesystem ready to use.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cri.api.runtime.v1 import api_pb2
from errdefs import FailedPrecondition, InvalidArgument
from snapshotters.mount import unmount
from snapshotters.snapshotter import Mount

__all__ = [
    "IDMap",
    "PodMapping",
    "idmapped_layers",
    "idmapped_mount",
    "pod_mapping",
    "probe_idmap",
    "upper_dir",
    "wants_idmap",
]

POD = api_pb2.NamespaceMode.POD
NODE = api_pb2.NamespaceMode.NODE
_MAX_ID = 2**32 - 1

_LIBC = ctypes.CDLL(None, use_errno=True)
# x86_64 and arm64 share these numbers (the new mount API came after the tables were unified).
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
_AT_FDCWD, _AT_EMPTY_PATH, _AT_RECURSIVE = -100, 0x1000, 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


@dataclass(frozen=True, slots=True)
class IDMap:
    container_id: int
    host_id: int
    size: int

    def line(self) -> str:
        """As /proc/<pid>/uid_map takes it."""
        return f"{self.container_id} {self.host_id} {self.size}\n"

    def to_host(self, container_id: int) -> int:
        return self.host_id + container_id - self.container_id


@dataclass(frozen=True, slots=True)
class PodMapping:
    uids: IDMap
    gids: IDMap


def pod_mapping(options: api_pb2.NamespaceOption) -> PodMapping | None:
    """The pod's user-namespace mapping, None when it uses the node's; InvalidArgument for what kubelet never
    sends (kubelet gives one range of uids and gids, container id 0 included)."""
    if not options.HasField("userns_options") or options.userns_options.mode == NODE:
        return None
    userns = options.userns_options
    if userns.mode != POD:
        raise InvalidArgument(f"user namespace mode {api_pb2.NamespaceMode.Name(userns.mode)} is not supported: "
                              "a pod has its own user namespace or the node's")
    return PodMapping(_one(userns.uids, "uid"), _one(userns.gids, "gid"))


def _one(mappings: Sequence[api_pb2.IDMapping], kind: str) -> IDMap:
    if len(mappings) != 1:
        raise InvalidArgument(f"a pod's user namespace needs exactly one {kind} mapping, got {len(mappings)}")
    m = mappings[0]
    if m.container_id != 0:
        raise InvalidArgument(f"the {kind} mapping must map container id 0 (it maps from {m.container_id})")
    if m.length == 0 or m.host_id + m.length - 1 > _MAX_ID:
        raise InvalidArgument(f"the {kind} mapping {m.host_id}+{m.length} is empty or out of range")
    return IDMap(m.container_id, m.host_id, m.length)


def wants_idmap(mount: api_pb2.Mount, pod: PodMapping | None) -> bool:
    """Whether a CRI mount asks for an idmapped bind; InvalidArgument when it asks for another mapping than
    its pod's user namespace has (one user namespace maps a container's ids one way)."""
    if not (len(mount.uidMappings) or len(mount.gidMappings)):
        return False
    where = f"mount {mount.container_path!r}"
    if pod is None:
        raise InvalidArgument(f"{where}: id-mapped mounts need a pod in its own user namespace")
    uids = [IDMap(m.container_id, m.host_id, m.length) for m in mount.uidMappings]
    gids = [IDMap(m.container_id, m.host_id, m.length) for m in mount.gidMappings]
    if uids != [pod.uids] or gids != [pod.gids]:
        raise InvalidArgument(f"{where}: its id mappings differ from those of the pod's user namespace")
    return True


def idmapped_mount(source: Path, target: Path, userns: Path) -> None:
    """Mount a clone of ``source`` (with its submounts) at ``target``, ids mapped through ``userns``."""
    tree = _syscall(_SYS_OPEN_TREE, "open_tree", ctypes.c_int(_AT_FDCWD), os.fsencode(source),
                    ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE))
    try:
        ns = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            attr = _MountAttr(attr_set=_MOUNT_ATTR_IDMAP, userns_fd=ns)
            _syscall(_SYS_MOUNT_SETATTR, f"idmap {source}", ctypes.c_int(tree), b"",
                     ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE), ctypes.byref(attr),
                     ctypes.c_size_t(ctypes.sizeof(attr)))
        finally:
            os.close(ns)
        _syscall(_SYS_MOVE_MOUNT, f"move the idmapped {source}", ctypes.c_int(tree), b"",
                 ctypes.c_int(_AT_FDCWD), os.fsencode(target), ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH))
    finally:
        os.close(tree)


@contextlib.contextmanager
def idmapped_layers(mounts: Sequence[Mount], scratch: Path, userns: Path) -> Iterator[list[Mount]]:
    """The overlay ``mounts`` with every lower layer an idmapped mount under ``scratch``, for as long as the
    overlay is being mounted: overlayfs keeps its own references to the layers, so the staging mounts go
    right after."""
    if len(mounts) != 1 or mounts[0].type != "overlay":
        raise FailedPrecondition("user namespaces need the overlayfs snapshotter (idmapped image layers)")
    overlay = mounts[0]
    base = Path(overlay.workdir) if overlay.workdir else None
    staged: list[Path] = []
    try:
        options = []
        for option in overlay.options:
            if option.startswith("lowerdir="):
                lowers = []
                for layer in option.removeprefix("lowerdir=").split(":"):
                    staged.append(target := scratch / str(len(staged)))
                    target.mkdir(parents=True)
                    idmapped_mount(base / layer if base else Path(layer), target, userns)
                    lowers.append(str(target))
                option = "lowerdir=" + ":".join(lowers)
            options.append(option)
        yield [Mount(overlay.type, overlay.source, tuple(options))]
    finally:
        for target in reversed(staged):
            unmount(target, detach=True)
            with contextlib.suppress(OSError):
                target.rmdir()
        with contextlib.suppress(OSError):
            scratch.rmdir()


def upper_dir(mounts: Sequence[Mount]) -> Path:
    overlay = mounts[0]
    value = next(o.removeprefix("upperdir=") for o in overlay.options if o.startswith("upperdir="))
    return Path(overlay.workdir) / value if overlay.workdir else Path(value)


def probe_idmap(folder: Path, userns: Path, target: Path) -> str:
    """"" when this kernel makes idmapped mounts of ``folder``'s filesystem (tried at ``target``), else why not."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        idmapped_mount(folder, target, userns)
        unmount(target, detach=True)
        return ""
    except FailedPrecondition as exc:
        return str(exc)
    finally:
        with contextlib.suppress(OSError):
            target.rmdir()


def _syscall(number: int, what: str, *args: object) -> int:
    result = _LIBC.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise FailedPrecondition(f"{what}: {os.strerror(err)} (idmapped mounts need Linux 5.12 and a "
                                 "filesystem that supports them)")
    return int(result)
