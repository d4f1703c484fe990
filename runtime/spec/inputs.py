"""What a CRI container's spec is built from, and the questions about it the options ask."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime.cgroups import CgroupDriver
from runtime.features import HandlerFeatures
from runtime.namespaces import PodNamespaces
from runtime.podfiles import PodFiles
from runtime.spec.host import DEFAULT_CAPS, HostFacts
from runtime.user import ResolvedUser

__all__ = ["SpecInputs", "image_string", "image_strings"]

DEFAULT_NAMESPACE = "k8s.io"
POD = api_pb2.NamespaceMode.Value("POD")
CONTAINER = api_pb2.NamespaceMode.Value("CONTAINER")
NODE = api_pb2.NamespaceMode.Value("NODE")
TARGET = api_pb2.NamespaceMode.Value("TARGET")


@dataclass(frozen=True)
class SpecInputs:
    """Everything a container's spec is built from.

    ``image_config`` is the ``config`` object of the image's config JSON (Env, Cmd, Entrypoint, WorkingDir,
    User...). ``rootfs`` goes into root.path as given (containerd writes "rootfs", relative to the bundle).
    """

    container_id: str
    sandbox_id: str
    config: api_pb2.ContainerConfig
    sandbox_config: api_pb2.PodSandboxConfig
    image_config: Mapping[str, Any]
    rootfs: str
    user: ResolvedUser
    namespaces: PodNamespaces = field(default_factory=PodNamespaces)
    files: PodFiles | None = None  # None: the image's own /etc files and a private /dev/shm
    image_name: str = ""  # the resolved image reference; defaults to the requested one
    cgroup_parent: str | None = None  # defaults to the pod config's linux.cgroup_parent
    hostname: str | None = None  # HOSTNAME env; defaults to the pod's hostname, else the host's
    target_pid_namespace: str | None = None  # for NamespaceMode TARGET: the target container's PID namespace
    restrict_oom_score_adj: bool = False  # never ask for a lower oom_score_adj than the runtime's own
    namespace: str = DEFAULT_NAMESPACE  # containerd namespace, for the default cgroups path
    cgroup_driver: CgroupDriver = CgroupDriver.CGROUPFS  # who makes the container's cgroup: runc or systemd
    host: HostFacts = field(default_factory=lambda: HostFacts(capabilities=DEFAULT_CAPS))
    handler: HandlerFeatures = field(default_factory=HandlerFeatures)  # what the pod's runtime handler can do
    # By container path: the folder crishim made for a CRI mount, bound in place of its host path (an idmapped
    # mount for one with id mappings; the image's mounted view for an image volume).
    bind_sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def security_context(self) -> api_pb2.LinuxContainerSecurityContext:
        return self.config.linux.security_context

    @property
    def privileged(self) -> bool:
        return bool(self.security_context.privileged)

    @property
    def pod_namespace_options(self) -> api_pb2.NamespaceOption:
        return self.sandbox_config.linux.security_context.namespace_options

    @property
    def host_network(self) -> bool:
        return bool(self.pod_namespace_options.network == NODE)

    @property
    def host_ipc(self) -> bool:
        return bool(self.pod_namespace_options.ipc == NODE)

    @property
    def pid_mode(self) -> int:
        # The container's own option decides; without one, the pod's (crictl sends container configs without it).
        sc = self.security_context
        if sc.HasField("namespace_options"):
            return int(sc.namespace_options.pid)
        return int(self.pod_namespace_options.pid)

    @property
    def resources(self) -> api_pb2.LinuxContainerResources | None:
        """The resources the request asks for, None when it names none."""
        config = self.config
        return config.linux.resources if config.HasField("linux") and config.linux.HasField("resources") else None


def image_strings(image_config: Mapping[str, Any], key: str) -> list[str]:
    value = image_config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errdefs.InvalidArgument(f"image config {key} is not a list of strings")
    return list(value)


def image_string(image_config: Mapping[str, Any], key: str) -> str:
    value = image_config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errdefs.InvalidArgument(f"image config {key} is not a string")
    return value
