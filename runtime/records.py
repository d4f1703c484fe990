"""What crishim remembers about pods and containers, stored as JSON in the metadata database.

The CRI configs are kept as serialized protobuf (base64), so a status call can
answer with exactly what kubelet sent. Live facts (is it running, its exit
code) come from the OCI runtime and conmon's exit files, not from here; the
record keeps the last known values so a restart can tell what changed.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cri.api.runtime.v1 import api_pb2

__all__ = ["ContainerRecord", "ContainerState", "ProcessUser", "SandboxRecord", "SandboxState"]

KIND_SANDBOX = "sandbox"
KIND_CONTAINER = "container"


class SandboxState:
    READY = "ready"
    NOTREADY = "notready"


class ContainerState:
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    id: str
    name: str
    config_b64: str
    created_at: int  # ns since the epoch
    state: str = SandboxState.READY
    runtime_handler: str = ""
    netns: str = ""
    ipcns: str = ""
    utsns: str = ""
    userns: str = ""  # only for a pod in its own user namespace
    pid_holder: int = 0
    ips: tuple[str, ...] = ()
    cgroup_parent: str = ""
    files_dir: str = ""  # hostname, hosts, resolv.conf, shm

    @property
    def config(self) -> api_pb2.PodSandboxConfig:
        config: api_pb2.PodSandboxConfig = api_pb2.PodSandboxConfig.FromString(base64.b64decode(self.config_b64))
        return config

    def replace(self, **changes: Any) -> SandboxRecord:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SandboxRecord:
        return cls(**{**doc, "ips": tuple(doc.get("ips", ()))})


@dataclass(frozen=True, slots=True)
class ProcessUser:
    """The identity a container's first process starts with."""

    uid: int
    gid: int
    supplemental_groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    id: str
    name: str
    sandbox_id: str
    config_b64: str
    created_at: int
    image_ref: str  # as asked for
    image_id: str  # config digest
    image_repo_digest: str
    snapshot_key: str
    snapshotter: str
    log_path: str
    bundle: str
    state: str = ContainerState.CREATED
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    stop_signal: str = "SIGTERM"
    mounts: tuple[dict[str, Any], ...] = field(default=())
    # What the OCI spec gave the container; None in records written before these were kept.
    user: ProcessUser | None = None
    resources_b64: str | None = None  # CRI LinuxContainerResources as applied ("" when nothing is limited)
    image_volumes: tuple[str, ...] = ()  # ids of the images mounted into it as volumes

    @property
    def config(self) -> api_pb2.ContainerConfig:
        config: api_pb2.ContainerConfig = api_pb2.ContainerConfig.FromString(base64.b64decode(self.config_b64))
        return config

    @property
    def resources(self) -> api_pb2.LinuxContainerResources | None:
        if self.resources_b64 is None:
            return None
        resources: api_pb2.LinuxContainerResources = api_pb2.LinuxContainerResources.FromString(
            base64.b64decode(self.resources_b64))
        return resources

    def replace(self, **changes: Any) -> ContainerRecord:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ContainerRecord:
        user = doc.get("user")
        return cls(**{**doc, "mounts": tuple(doc.get("mounts", ())),
                      "image_volumes": tuple(doc.get("image_volumes", ())),
                      "user": None if user is None else ProcessUser(
                          int(user["uid"]), int(user["gid"]), tuple(user["supplemental_groups"]))})


def encode(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()
