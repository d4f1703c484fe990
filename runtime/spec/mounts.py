"""The container's mounts: the default filesystems, the CRI's bind mounts and image volumes, and the pod's
files (/etc/hostname, /etc/hosts, /etc/resolv.conf, /dev/shm), with their propagation."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime.features import HandlerFeatures
from runtime.spec import options as o
from runtime.spec.host import HostFacts
from runtime.spec.inputs import SpecInputs
from runtime.spec.model import Mount
from runtime.spec.options import SpecOpt

__all__ = ["mount_options"]

ETC_HOSTNAME = "/etc/hostname"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
DEV_SHM = "/dev/shm"

PROPAGATION = {
    api_pb2.MountPropagation.Value("PROPAGATION_PRIVATE"): "rprivate",
    api_pb2.MountPropagation.Value("PROPAGATION_HOST_TO_CONTAINER"): "rslave",
    api_pb2.MountPropagation.Value("PROPAGATION_BIDIRECTIONAL"): "rshared",
}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class _Bind:
    source: str
    destination: str
    readonly: bool = False
    propagation: int = 0
    recursive_read_only: bool = False


def mount_options(inputs: SpecInputs) -> list[SpecOpt]:
    """The mounts, and the root's propagation the binds need. Missing bind sources are made here (as
    containerd does), so these options come last: a request refused for another reason leaves no trace."""
    requested = [_cri_bind(m, inputs.handler, inputs.bind_sources) for m in inputs.config.mounts]
    taken = {posixpath.normpath(b.destination) for b in requested}
    binds = requested + [b for b in _pod_binds(inputs) if posixpath.normpath(b.destination) not in taken]
    # Fewer path components first, so that /a is mounted before /a/b rather than over it.
    binds.sort(key=lambda b: posixpath.normpath(b.destination).count("/"))

    targets = {posixpath.normpath(b.destination) for b in binds}
    mounts = [
        m for m in _default_mounts(inputs.privileged)
        if m.destination not in targets and not ("/dev" in targets and m.destination.startswith("/dev/"))
    ]
    propagation = ""
    for bind in binds:
        mount, propagation = _bind_mount(bind, inputs.host, propagation)
        mounts.append(mount)
    options = [o.with_mounts(mounts)]
    if propagation:
        options.append(o.with_rootfs_propagation(propagation))
    return options


def _default_mounts(privileged: bool) -> list[Mount]:
    # sysfs and the cgroup tree are read-only unless the container is privileged.
    sys_mode = "rw" if privileged else "ro"
    return [
        Mount("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
        Mount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        Mount("/dev/pts", "devpts", "devpts",
              ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
        Mount("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
        Mount("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
        Mount("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", sys_mode)),
        Mount("/sys/fs/cgroup", "cgroup", "cgroup", ("nosuid", "noexec", "nodev", "relatime", sys_mode)),
    ]


def _cri_bind(mount: api_pb2.Mount, handler: HandlerFeatures, made: Mapping[str, str]) -> _Bind:
    if mount.image.image or mount.image_sub_path:
        return _image_volume(mount, made)
    if mount.recursive_read_only:
        _check_recursive_read_only(mount, handler)
    if not mount.container_path.startswith("/"):
        raise errdefs.InvalidArgument(f"mount container path {mount.container_path!r} is not absolute")
    if not mount.host_path.startswith("/"):
        raise errdefs.InvalidArgument(
            f"mount host path {mount.host_path!r} (for {mount.container_path!r}) is not absolute")
    if len(mount.uidMappings) or len(mount.gidMappings):
        source = made.get(mount.container_path)
        if source is None:
            raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: id-mapped mounts need a pod in its own "
                                          "user namespace")
        return _Bind(source, mount.container_path, bool(mount.readonly), int(mount.propagation))
    return _Bind(mount.host_path, mount.container_path, bool(mount.readonly), int(mount.propagation),
                 bool(mount.recursive_read_only))


def _image_volume(mount: api_pb2.Mount, made: Mapping[str, str]) -> _Bind:
    source = made.get(mount.container_path)
    if not mount.image.image:
        raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: an image sub path needs an image")
    if source is None:
        raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: the image volume was not prepared")
    # Read-only whatever the request says, as in containerd and CRI-O: the view is shared by containers.
    return _Bind(source, mount.container_path, True, int(mount.propagation))


def _check_recursive_read_only(mount: api_pb2.Mount, handler: HandlerFeatures) -> None:
    # containerd's and kubelet's rules: rro is read-only all the way down, which propagation would undo.
    where = f"mount {mount.container_path!r}"
    if not mount.readonly:
        raise errdefs.FailedPrecondition(f"{where}: a recursive read-only mount must be read-only")
    if mount.propagation != api_pb2.MountPropagation.PROPAGATION_PRIVATE:
        raise errdefs.FailedPrecondition(f"{where}: a recursive read-only mount needs private propagation")
    if not handler.recursive_read_only_mounts:
        raise errdefs.FailedPrecondition(
            f"{where}: recursive read-only mounts are not supported by the runtime handler on this host")


def _pod_binds(inputs: SpecInputs) -> list[_Bind]:
    readonly = bool(inputs.security_context.readonly_rootfs)
    files = inputs.files
    binds = [] if files is None else [
        _Bind(str(path), dest, readonly)
        for path, dest in ((files.hostname, ETC_HOSTNAME), (files.hosts, ETC_HOSTS), (files.resolv_conf, RESOLV_CONF))
    ]
    # A pod in the host's IPC namespace sees the host's /dev/shm, as its processes would outside a container.
    if inputs.host_ipc:
        binds.append(_Bind(DEV_SHM, DEV_SHM))
    elif files is not None:
        binds.append(_Bind(str(files.shm), DEV_SHM))
    return binds


def _bind_mount(bind: _Bind, host: HostFacts, rootfs_propagation: str) -> tuple[Mount, str]:
    source = _bind_source(bind)
    options = ["rbind"]
    mode = PROPAGATION.get(bind.propagation, "rprivate")
    if mode == "rshared":
        _require_propagation(source, host, ("shared:",), "a shared mount")
        rootfs_propagation = "rshared"
    elif mode == "rslave":
        _require_propagation(source, host, ("shared:", "master:"), "a shared or slave mount")
        if rootfs_propagation not in ("rshared", "rslave"):
            rootfs_propagation = "rslave"
    options.append(mode)
    # Unlike docker, a read-only rootfs does not make the other mounts read-only.
    options.append("ro" if bind.readonly else "rw")
    if bind.recursive_read_only:
        options.append("rro")  # mount_setattr(AT_RECURSIVE) by the runtime: submounts too
    return Mount(bind.destination, "bind", source, tuple(options)), rootfs_propagation


def _bind_source(bind: _Bind) -> str:
    # containerd creates a missing source as a directory (kubelet relies on it for hostPath volumes), then
    # mounts what symlinks point to, so the mount does not depend on links that may change later.
    try:
        if not os.path.lexists(bind.source):
            os.makedirs(bind.source, mode=0o755, exist_ok=True)
        return os.path.realpath(bind.source, strict=True)
    except OSError as exc:
        raise errdefs.InvalidArgument(
            f"mount source {bind.source!r} for {bind.destination!r} is unusable: {exc.strerror or exc}") from exc


def _require_propagation(source: str, host: HostFacts, tags: tuple[str, ...], what: str) -> None:
    mountpoint, optional = _mount_of(source, host.mountinfo)
    if not any(field.startswith(tags) for field in optional):
        raise errdefs.FailedPrecondition(f"path {source!r} is mounted on {mountpoint!r} but it is not {what}")


def _mount_of(path: str, mountinfo: str) -> tuple[str, list[str]]:
    """The mount point holding ``path`` and its optional fields (shared:N, master:N...) from mountinfo."""
    best: tuple[str, list[str]] = ("/", [])
    best_len = -1
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 7:
                continue
            point = _unescape_mountinfo(fields[4])
            if not _is_under(path, point) or len(point) < best_len:
                continue
            # Of stacked mounts on one point, the last listed is the one on top.
            best, best_len = (point, fields[6:fields.index("-")] if "-" in fields else []), len(point)
    return best


def _unescape_mountinfo(text: str) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def _is_under(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
