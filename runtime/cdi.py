"""CDI (Container Device Interface) devices: a container's ``CDI_devices`` resolved from the spec files in
the CDI folders, their container edits given as spec options, as containerd and CRI-O apply them.

A device is named ``vendor.example/class=name``. Each ``*.json`` or ``*.yaml`` file in the folders declares
one ``kind`` (``vendor.example/class``), its devices, and edits for every device of the kind; the file that
comes later (folders in order, then names) wins for a device declared twice. Edits are environment
variables, device nodes (allowed in the device cgroup), bind mounts and hooks. The folders are read anew for
each container, so a spec a device plugin writes is seen without a restart; a file that cannot be read or
does not parse hides only its own devices (a request for one of them says why).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from errdefs import InvalidArgument, NotFound
from runtime.spec import options as o
from runtime.spec.model import Device, DeviceRule, Hook, Mount
from runtime.spec.options import SpecOpt

__all__ = ["CDIRegistry"]

_DEVICE_TYPES = {stat.S_IFCHR: "c", stat.S_IFBLK: "b"}
_HOOK_POINTS = frozenset({"prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                          "poststop"})


@dataclass(frozen=True, slots=True)
class _DeviceNode:
    """A device node as a spec file declares it: without a type and numbers, those of the host's node."""

    path: str
    host_path: str
    permissions: str
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def resolve(self, source: Path) -> tuple[Device, DeviceRule]:
        if self.type is not None and self.major is not None:
            kind, major, minor, mode = self.type, self.major, self.minor or 0, self.file_mode
        else:
            try:
                info = os.stat(self.host_path)
            except OSError as exc:
                raise InvalidArgument(f"CDI spec {source}: device {self.host_path}: {exc.strerror}") from exc
            found = _DEVICE_TYPES.get(stat.S_IFMT(info.st_mode))
            if found is None:
                raise InvalidArgument(f"CDI spec {source}: {self.host_path} is not a device node")
            kind, major, minor = found, os.major(info.st_rdev), os.minor(info.st_rdev)
            mode = self.file_mode if self.file_mode is not None else stat.S_IMODE(info.st_mode)
        device = Device(self.path, kind, major, minor, mode, self.uid, self.gid)
        return device, DeviceRule(True, self.permissions, kind, major, minor)


@dataclass(frozen=True, slots=True)
class _Edits:
    env: tuple[str, ...] = ()
    device_nodes: tuple[_DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    hooks: tuple[tuple[str, Hook], ...] = ()  # (point, hook)

    def options(self, source: Path) -> list[SpecOpt]:
        nodes = [node.resolve(source) for node in self.device_nodes]
        options = [o.with_added_env(self.env), o.with_devices(device for device, _ in nodes),
                   o.with_device_rules(rule for _, rule in nodes), o.with_mounts(self.mounts)]
        options += [o.with_hooks(point, [hook]) for point, hook in self.hooks]
        return options


@dataclass(frozen=True, slots=True)
class _Device:
    edits: tuple[_Edits, ...]  # the kind's, then the device's own
    source: Path


class CDIRegistry:
    def __init__(self, folders: Sequence[Path]) -> None:
        self._folders = tuple(folders)

    def options(self, names: Sequence[str]) -> list[SpecOpt]:
        """The spec options that make every named device's edits; NotFound for a device no spec declares,
        InvalidArgument for a malformed name or a device node that is not there."""
        if not names:
            return []
        for name in names:
            if "=" not in name or "/" not in name.split("=", 1)[0]:
                raise InvalidArgument(f"CDI device {name!r} is not of the form vendor/class=name")
        devices, unreadable = self._devices()
        options: list[SpecOpt] = []
        for name in names:
            device = devices.get(name)
            if device is None:
                folders = ", ".join(map(str, self._folders))
                why = "".join(f"; {path}: {error}" for path, error in unreadable.items())
                raise NotFound(f"CDI device {name!r}: no CDI spec in {folders} declares it{why}")
            for edits in device.edits:
                options += edits.options(device.source)
        return options

    def _devices(self) -> tuple[dict[str, _Device], dict[Path, str]]:
        found: dict[str, _Device] = {}
        unreadable: dict[Path, str] = {}
        for folder in self._folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix in (".json", ".yaml", ".yml"):
                    try:
                        found.update(_read_spec(path))
                    except InvalidArgument as exc:
                        unreadable[path] = str(exc)
        return found, unreadable


def _read_spec(path: Path) -> dict[str, _Device]:
    try:
        text = path.read_text()
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"unreadable: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        raise InvalidArgument("no kind")
    common = _edits(document.get("containerEdits"))
    devices = {}
    for device in _list(document.get("devices"), "devices"):
        if not isinstance(device, dict) or not isinstance(device.get("name"), str) or not device["name"]:
            raise InvalidArgument("a device without a name")
        devices[f"{document['kind']}={device['name']}"] = _Device((common, _edits(device.get("containerEdits"))),
                                                                  path)
    return devices


def _edits(doc: Any) -> _Edits:
    if doc is None:
        return _Edits()
    if not isinstance(doc, dict):
        raise InvalidArgument("containerEdits is not an object")
    return _Edits(env=_strings(doc.get("env"), "env"),
                  device_nodes=tuple(_device_node(node) for node in _list(doc.get("deviceNodes"), "deviceNodes")),
                  mounts=tuple(_mount(mount) for mount in _list(doc.get("mounts"), "mounts")),
                  hooks=tuple(_hook(hook) for hook in _list(doc.get("hooks"), "hooks")))


def _device_node(doc: Any) -> _DeviceNode:
    if not isinstance(doc, dict) or not isinstance(doc.get("path"), str) or not doc["path"]:
        raise InvalidArgument("a device node without a path")
    kind = doc.get("type")
    if kind is not None and kind not in ("b", "c"):
        raise InvalidArgument(f"device node {doc['path']}: type {kind!r} is neither b nor c")
    permissions = doc.get("permissions", "rwm")
    if not isinstance(permissions, str) or not permissions or set(permissions) - set("rwm"):
        raise InvalidArgument(f"device node {doc['path']}: permissions {permissions!r} are not of r, w and m")
    return _DeviceNode(path=doc["path"], host_path=_string(doc.get("hostPath", doc["path"]), "hostPath"),
                       permissions=permissions, type=kind, major=_int(doc, "major"), minor=_int(doc, "minor"),
                       file_mode=_int(doc, "fileMode"), uid=_int(doc, "uid"), gid=_int(doc, "gid"))


def _mount(doc: Any) -> Mount:
    if not isinstance(doc, dict):
        raise InvalidArgument("a mount that is not an object")
    options = _strings(doc.get("options"), "mount options") if "options" in doc else ("rbind", "rprivate")
    return Mount(destination=_string(doc.get("containerPath"), "containerPath"),
                 type=_string(doc.get("type", "bind"), "mount type"),
                 source=_string(doc.get("hostPath"), "hostPath"), options=options)


def _hook(doc: Any) -> tuple[str, Hook]:
    if not isinstance(doc, dict) or doc.get("hookName") not in _HOOK_POINTS:
        point = doc.get("hookName") if isinstance(doc, dict) else None
        raise InvalidArgument(f"a hook with hookName {point!r}, not one of {', '.join(sorted(_HOOK_POINTS))}")
    return doc["hookName"], Hook(path=_string(doc.get("path"), "hook path"), args=_strings(doc.get("args"), "args"),
                                 env=_strings(doc.get("env"), "hook env"), timeout=_int(doc, "timeout"))


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{what} is not a list")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = _list(value, what)
    if not all(isinstance(item, str) for item in items):
        raise InvalidArgument(f"{what} is not a list of strings")
    return tuple(items)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} is not a string")
    return value


def _int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{key} {value!r} is not a number")
    return value
