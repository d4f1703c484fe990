"""The OCI runtime spec (a bundle's config.json) as typed records: what options build and ``to_json`` writes.

Only the parts crishim fills in are here, each written as the OCI spec names it; a field left at its
default is left out of the document, except where runc needs it present (a container's resources, even
empty ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CPU", "Device", "DeviceRule", "Hook", "HugepageLimit", "IDMapping", "Linux", "Memory", "Mount",
           "Namespace", "Process", "Resources", "Root", "Spec", "User"]

OCI_VERSION = "1.0.2-dev"  # what runc 1.1 reports as its spec version


@dataclass(slots=True)
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            doc["additionalGids"] = list(self.additional_gids)
        return doc


@dataclass(slots=True)
class Process:
    user: User = field(default_factory=User)
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    # The bounding set, which is also the effective and permitted one.
    capabilities: list[str] = field(default_factory=list)
    terminal: bool = False
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        caps = self.capabilities
        doc: dict[str, Any] = {
            "user": self.user.to_json(), "args": list(self.args), "env": list(self.env), "cwd": self.cwd,
            "capabilities": {key: list(caps) for key in ("bounding", "effective", "permitted") if caps},
        }
        if self.terminal:
            doc["terminal"] = True
        if self.no_new_privileges:
            doc["noNewPrivileges"] = True
        if self.oom_score_adj is not None:
            doc["oomScoreAdj"] = self.oom_score_adj
        if self.apparmor_profile is not None:
            doc["apparmorProfile"] = self.apparmor_profile
        return doc


@dataclass(slots=True)
class Root:
    path: str = "rootfs"
    readonly: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "readonly": True} if self.readonly else {"path": self.path}


@dataclass(frozen=True, slots=True)
class Mount:
    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": self.type, "source": self.source,
                "options": list(self.options)}


@dataclass(frozen=True, slots=True)
class Namespace:
    type: str
    path: str = ""  # empty: a new namespace

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "path": self.path} if self.path else {"type": self.type}


@dataclass(frozen=True, slots=True)
class IDMapping:
    container_id: int
    host_id: int
    size: int

    def to_json(self) -> dict[str, int]:
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}


@dataclass(frozen=True, slots=True)
class Device:
    """A device node runc makes in the container; mode and owner None: left to the runtime's defaults."""

    path: str
    type: str  # "b" or "c"
    major: int
    minor: int
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "type": self.type, "major": self.major, "minor": self.minor}
        for key, value in (("fileMode", self.file_mode), ("uid", self.uid), ("gid", self.gid)):
            if value is not None:
                doc[key] = value
        return doc


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """An entry of the device cgroup's list; no type, major and minor: every device."""

    allow: bool
    access: str
    type: str = ""
    major: int | None = None
    minor: int | None = None

    def to_json(self) -> dict[str, Any]:
        if not self.type:
            return {"allow": self.allow, "access": self.access}
        return {"allow": self.allow, "type": self.type, "major": self.major, "minor": self.minor,
                "access": self.access}


@dataclass(slots=True)
class Memory:
    limit: int | None = None
    swap: int | None = None

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in (("limit", self.limit), ("swap", self.swap)) if v is not None}


@dataclass(slots=True)
class CPU:
    shares: int | None = None
    quota: int | None = None
    period: int | None = None
    cpus: str | None = None
    mems: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = (("shares", self.shares), ("quota", self.quota), ("period", self.period), ("cpus", self.cpus),
                  ("mems", self.mems))
        return {k: v for k, v in fields if v is not None}


@dataclass(frozen=True, slots=True)
class HugepageLimit:
    page_size: str
    limit: int

    def to_json(self) -> dict[str, Any]:
        return {"pageSize": self.page_size, "limit": self.limit}


@dataclass(slots=True)
class Resources:
    """A container's cgroup settings. ``devices`` None: left as they are (what ``runc update`` is given); memory
    and cpu None: not asked for (written as empty objects when asked for with nothing set, as containerd)."""

    devices: list[DeviceRule] | None = field(default_factory=lambda: [DeviceRule(allow=False, access="rwm")])
    memory: Memory | None = None
    cpu: CPU | None = None
    hugepage_limits: list[HugepageLimit] = field(default_factory=list)
    unified: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.devices is not None:
            doc["devices"] = [rule.to_json() for rule in self.devices]
        if self.memory is not None:
            doc["memory"] = self.memory.to_json()
        if self.cpu is not None:
            doc["cpu"] = self.cpu.to_json()
        if self.hugepage_limits:
            doc["hugepageLimits"] = [limit.to_json() for limit in self.hugepage_limits]
        if self.unified:
            doc["unified"] = dict(self.unified)
        return doc


@dataclass(slots=True)
class Linux:
    resources: Resources = field(default_factory=Resources)
    cgroups_path: str = ""  # empty: the runtime's default
    namespaces: list[Namespace] = field(default_factory=list)
    uid_mappings: list[IDMapping] = field(default_factory=list)
    gid_mappings: list[IDMapping] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    seccomp: Mapping[str, Any] | None = None  # a seccomp profile document (runtime.seccomp builds them)
    rootfs_propagation: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"resources": self.resources.to_json()}
        if self.cgroups_path:
            doc["cgroupsPath"] = self.cgroups_path
        doc["namespaces"] = [ns.to_json() for ns in self.namespaces]
        if self.uid_mappings:
            doc["uidMappings"] = [m.to_json() for m in self.uid_mappings]
        if self.gid_mappings:
            doc["gidMappings"] = [m.to_json() for m in self.gid_mappings]
        if self.devices:
            doc["devices"] = [d.to_json() for d in self.devices]
        if self.masked_paths:
            doc["maskedPaths"] = list(self.masked_paths)
        if self.readonly_paths:
            doc["readonlyPaths"] = list(self.readonly_paths)
        if self.sysctl:
            doc["sysctl"] = dict(self.sysctl)
        if self.seccomp is not None:
            doc["seccomp"] = dict(self.seccomp)
        if self.rootfs_propagation:
            doc["rootfsPropagation"] = self.rootfs_propagation
        return doc


@dataclass(frozen=True, slots=True)
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None  # seconds

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path}
        if self.args:
            doc["args"] = list(self.args)
        if self.env:
            doc["env"] = list(self.env)
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        return doc


@dataclass(slots=True)
class Spec:
    process: Process = field(default_factory=Process)
    root: Root = field(default_factory=Root)
    mounts: list[Mount] = field(default_factory=list)
    # By the point of the container's life they run at (createRuntime, poststart...), in order.
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    linux: Linux = field(default_factory=Linux)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ociVersion": OCI_VERSION, "process": self.process.to_json(),
                               "root": self.root.to_json(), "mounts": [m.to_json() for m in self.mounts]}
        if self.hooks:
            doc["hooks"] = {point: [hook.to_json() for hook in hooks] for point, hooks in self.hooks.items()}
        doc["annotations"] = dict(self.annotations)
        doc["linux"] = self.linux.to_json()
        return doc
