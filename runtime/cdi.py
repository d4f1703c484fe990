"""CDI (Container Device Interface) devices: a container's ``CDI_devices`` resolved from the spec files in
the CDI folders, their container edits applied to its OCI spec, as containerd and CRI-O do.

A device is named ``vendor.example/class=name``. Each ``*.json`` or ``*.yaml`` file in the folders declares
one ``kind`` (``vendor.example/class``), its devices, and edits for every device of the kind; the file that
comes later (folders in order, then names) wins for a device declared twice. Edits are environment
variables, device nodes (allowed in the device cgroup), bind mounts and hooks. The folders are read anew for
each container, so a spec a device plugin writes is seen without a restart.
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

__all__ = ["CDIRegistry"]

_DEVICE_TYPES = {stat.S_IFCHR: "c", stat.S_IFBLK: "b"}


@dataclass(frozen=True, slots=True)
class _Device:
    edits: tuple[dict[str, Any], ...]  # the kind's, then the device's own
    source: Path


class CDIRegistry:
    def __init__(self, folders: Sequence[Path]) -> None:
        self._folders = tuple(folders)

    def inject(self, spec: dict[str, Any], names: Sequence[str]) -> None:
        """Apply the edits of every named device to ``spec``; NotFound for a device no spec declares."""
        if not names:
            return
        devices = self._devices()
        for name in names:
            if "=" not in name or "/" not in name.split("=", 1)[0]:
                raise InvalidArgument(f"CDI device {name!r} is not of the form vendor/class=name")
            device = devices.get(name)
            if device is None:
                folders = ", ".join(map(str, self._folders))
                raise NotFound(f"CDI device {name!r}: no CDI spec in {folders} declares it")
            for edits in device.edits:
                _apply(spec, edits, device.source)

    def _devices(self) -> dict[str, _Device]:
        found: dict[str, _Device] = {}
        for folder in self._folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix in (".json", ".yaml", ".yml"):
                    found.update(_read_spec(path))
        return found


def _read_spec(path: Path) -> dict[str, _Device]:
    try:
        text = path.read_text()
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"CDI spec {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        raise InvalidArgument(f"CDI spec {path}: no kind")
    common = document.get("containerEdits") or {}
    devices = {}
    for device in document.get("devices") or []:
        if not isinstance(device, dict) or not device.get("name"):
            raise InvalidArgument(f"CDI spec {path}: a device without a name")
        edits = (common, device.get("containerEdits") or {})
        devices[f"{document['kind']}={device['name']}"] = _Device(edits, path)
    return devices


def _apply(spec: dict[str, Any], edits: dict[str, Any], source: Path) -> None:
    process = spec.setdefault("process", {})
    process["env"] = [*process.get("env", []), *edits.get("env", [])]
    linux = spec.setdefault("linux", {})
    for node in edits.get("deviceNodes", []):
        device = _device_node(node, source)
        linux.setdefault("devices", []).append(device)
        rules = linux.setdefault("resources", {}).setdefault("devices", [])
        rules.append({"allow": True, "type": device["type"], "major": device["major"], "minor": device["minor"],
                      "access": node.get("permissions", "rwm")})
    for mount in edits.get("mounts", []):
        spec.setdefault("mounts", []).append({
            "destination": mount["containerPath"], "source": mount["hostPath"],
            "type": mount.get("type", "bind"), "options": mount.get("options", ["rbind", "rprivate"])})
    for hook in edits.get("hooks", []):
        entry = {k: hook[k] for k in ("path", "args", "env", "timeout") if k in hook}
        spec.setdefault("hooks", {}).setdefault(hook["hookName"], []).append(entry)


def _device_node(node: dict[str, Any], source: Path) -> dict[str, Any]:
    path = node.get("path")
    if not path:
        raise InvalidArgument(f"CDI spec {source}: a device node without a path")
    device: dict[str, Any] = {"path": path}
    if "major" in node and "type" in node:
        device.update(type=node["type"], major=node["major"], minor=node.get("minor", 0))
    else:
        host = node.get("hostPath", path)
        try:
            info = os.stat(host)
        except OSError as exc:
            raise InvalidArgument(f"CDI spec {source}: device {host}: {exc.strerror}") from exc
        kind = _DEVICE_TYPES.get(stat.S_IFMT(info.st_mode))
        if kind is None:
            raise InvalidArgument(f"CDI spec {source}: {host} is not a device node")
        device.update(type=kind, major=os.major(info.st_rdev), minor=os.minor(info.st_rdev),
                      fileMode=stat.S_IMODE(info.st_mode))
    for key in ("fileMode", "uid", "gid"):
        if key in node:
            device[key] = node[key]
    return device
