"""crishim's image and runtime services built in this process on a fresh root and state, for tests that
must reach between two steps of an RPC (a failure injected after ``runc create``, two calls interleaved).

Everything below the servicers is real: SQLite, the overlayfs snapshotter, conmon, runc, the registry.
Pods use the host's network namespace, so no CNI network is needed. ``close`` removes every pod (and so
every container, mount and namespace pin) and checks nothing of crishim's is left running.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cri.api.runtime.v1 import api_pb2
from cri.config import Config
from cri.image_service import ImageService
from cri.metrics import Metrics
from cri.node import open_node
from cri.runtime_service import RuntimeService
from tests.support.mounts import unmount_under

NODE = 2  # api_pb2.NamespaceMode.NODE


@dataclass
class Node:
    root: Path
    state: Path
    images: ImageService
    runtime: RuntimeService
    stack: contextlib.ExitStack
    pods: list[str] = field(default_factory=list)

    def pull(self, ref: str) -> str:
        request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
        return str(self.images.PullImage(request, None).image_ref)

    def pod_config(self, name: str = "") -> api_pb2.PodSandboxConfig:
        name = name or f"pod-{secrets.token_hex(4)}"
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, namespace="default", uid=secrets.token_hex(8)),
            log_directory=str(self.root.parent / "pod-logs" / name))
        config.linux.security_context.namespace_options.network = NODE
        return config

    def run_pod(self, name: str = "") -> str:
        request = api_pb2.RunPodSandboxRequest(config=self.pod_config(name))
        pod_id = str(self.runtime.RunPodSandbox(request, None).pod_sandbox_id)
        self.pods.append(pod_id)
        return pod_id

    def container_request(self, pod_id: str, image: str, command: list[str],
                          name: str = "") -> api_pb2.CreateContainerRequest:
        pod = self.runtime.pods.get(pod_id).config
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name or f"ctr-{secrets.token_hex(4)}"),
            image=api_pb2.ImageSpec(image=image), command=command, log_path="ctr.log")
        return api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod)

    def create(self, pod_id: str, image: str, command: list[str]) -> str:
        response = self.runtime.CreateContainer(self.container_request(pod_id, image, command), None)
        return str(response.container_id)

    def close(self) -> None:
        for pod_id in self.pods:
            with contextlib.suppress(Exception):
                self.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), None)
            with contextlib.suppress(Exception):
                self.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), None)
        self.stack.close()
        unmount_under(self.state)
        unmount_under(self.root)


def start_node(workdir: Path) -> Node:
    root, state = workdir / "root", workdir / "state"
    config = Config(root=root, state=state, cni_conf_dir=workdir / "net.d")
    with contextlib.ExitStack() as stack:
        node = open_node(config, Metrics(), stack)
        return Node(root, state, node.images, node.runtime, stack.pop_all())


def processes_naming(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (a container id): conmon, runc init, the container."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(proc.name))
    return found
