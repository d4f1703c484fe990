"""Device nodes: those a CRI request names (a directory gives every device under it) and, for a privileged
container, every device of the host's /dev."""

from __future__ import annotations

import os
import posixpath
import stat

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime.spec.model import Device, DeviceRule

__all__ = ["cri_devices", "host_devices"]

# Directories of /dev a privileged container does not get from the host: each has its own mount in the container.
HOST_DEV_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def cri_devices(config: api_pb2.ContainerConfig) -> tuple[list[Device], list[DeviceRule]]:
    """The request's devices, and the rules that let the container use them as it asks."""
    devices: list[Device] = []
    rules: list[DeviceRule] = []
    for device in config.devices:
        if not device.host_path.startswith("/"):
            raise errdefs.InvalidArgument(f"device host path {device.host_path!r} is not absolute")
        if set(device.permissions) - set("rwm"):
            raise errdefs.InvalidArgument(
                f"device {device.host_path!r}: permissions {device.permissions!r} are not a combination of r, w, m")
        try:
            path = os.path.realpath(device.host_path, strict=True)
        except OSError as exc:
            raise errdefs.InvalidArgument(f"device {device.host_path!r}: {exc.strerror or exc}") from exc
        for dev in _devices_at(path, device.container_path):
            devices.append(dev)
            rules.append(DeviceRule(True, device.permissions, dev.type, dev.major, dev.minor))
    return devices, rules


def host_devices() -> list[Device]:
    return _devices_in_dir("/dev", "", strict=False)


def _devices_at(path: str, container_path: str) -> list[Device]:
    """The device at ``path``, or every device under it when it is a directory (as for /dev/snd)."""
    if not os.path.isdir(path):
        device = _device(path, container_path)
        if device is None:
            raise errdefs.InvalidArgument(f"device {path!r} is not a device node")
        return [device]
    return _devices_in_dir(path, container_path, strict=True)


def _devices_in_dir(path: str, container_path: str, strict: bool) -> list[Device]:
    out: list[Device] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        if not strict:
            return out
        raise errdefs.InvalidArgument(f"cannot list devices in {path!r}: {exc.strerror}") from exc
    for entry in entries:
        target = posixpath.join(container_path, entry.name) if container_path else ""
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in HOST_DEV_SKIP:
                out += _devices_in_dir(entry.path, target, strict)
            continue
        if entry.name == "console":
            continue
        device = _device(entry.path, target)
        # FIFOs are not devices to a cgroup; links and regular files are skipped too.
        if device is None or device.type == "p":
            continue
        out.append(device)
    return out


def _device(path: str, container_path: str) -> Device | None:
    """The node at ``path`` (a FIFO too, typed "p"), seen in the container at ``container_path`` or its own path."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        return None
    return Device(container_path or path, kind, os.major(st.st_rdev), os.minor(st.st_rdev),
                  stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
