"""The RuntimeService servicer: each method delegates to the module named for its RPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cri.api.runtime.v1 import api_pb2_grpc
from cri.config import Config
from cri.metrics import Metrics
from cri.runtime_service import (
    checkpoint_container,
    container_stats,
    container_status,
    create_container,
    exec_sync,
    get_container_events,
    list_containers,
    list_pod_sandbox,
    pod_sandbox_metrics,
    pod_sandbox_stats,
    pod_sandbox_status,
    remove_container,
    remove_pod_sandbox,
    reopen_container_log,
    run_pod_sandbox,
    runtime_config,
    start_container,
    status,
    stop_container,
    stop_pod_sandbox,
    streaming,
    update_container_resources,
    version,
)
from cri.runtime_service.images import RuntimeImages
from cri.runtime_service.list_containers import container_message
from cri.runtime_service.list_pod_sandbox import pod_message
from cri.runtime_service.message_memo import MessageMemo
from cri.snapshot_usage import SnapshotUsage
from cri.streaming.server import StreamServer
from runtime.cgroups import CgroupDriver
from runtime.cni import CNI
from runtime.containers import ContainerManager
from runtime.events import EventBus
from runtime.handlers import Handlers
from runtime.oci import OCIRuntime
from runtime.pods import PodManager
from runtime.stats import CpuRates


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    """Over the runtime parts the daemon built (``cri.node``); the constructor does no I/O."""

    def __init__(self, config: Config, metrics: Metrics, *, images: RuntimeImages, events: EventBus, cni: CNI,
                 handlers: Handlers, oci: OCIRuntime, pods: PodManager, containers: ContainerManager,
                 streams: StreamServer, cgroup_driver: CgroupDriver, snapshot_usage: SnapshotUsage) -> None:
        self.config = config
        self.metrics = metrics
        self.cgroup_driver = cgroup_driver
        self.images = images
        self.events = events
        self.cni = cni
        self.handlers = handlers
        self.oci = oci
        self.pods = pods
        self.containers = containers
        self.streams = streams
        self.snapshot_usage = snapshot_usage  # containers' writable layers, as last measured
        self.pod_cidr = ""
        self.cpu_rates = CpuRates()  # the sample before, per container and pod, for usage_nano_cores
        # Built for listings, kept while a container or pod is unchanged.
        self.container_messages = MessageMemo(container_message)
        self.pod_messages = MessageMemo(pod_message)

    def Version(self, request: Any, context: Any) -> Any:
        return version.version(request)

    def Status(self, request: Any, context: Any) -> Any:
        return status.status(self, request)

    def RunPodSandbox(self, request: Any, context: Any) -> Any:
        return run_pod_sandbox.run_pod_sandbox(self, request)

    def StopPodSandbox(self, request: Any, context: Any) -> Any:
        return stop_pod_sandbox.stop_pod_sandbox(self, request)

    def RemovePodSandbox(self, request: Any, context: Any) -> Any:
        return remove_pod_sandbox.remove_pod_sandbox(self, request)

    def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        return pod_sandbox_status.pod_sandbox_status(self, request)

    def ListPodSandbox(self, request: Any, context: Any) -> Any:
        return list_pod_sandbox.list_pod_sandbox(self, request)

    def StreamPodSandboxes(self, request: Any, context: Any) -> Iterator[Any]:
        return list_pod_sandbox.stream_pod_sandboxes(self, request, context)

    def CreateContainer(self, request: Any, context: Any) -> Any:
        return create_container.create_container(self, request)

    def StartContainer(self, request: Any, context: Any) -> Any:
        return start_container.start_container(self, request)

    def StopContainer(self, request: Any, context: Any) -> Any:
        return stop_container.stop_container(self, request)

    def RemoveContainer(self, request: Any, context: Any) -> Any:
        return remove_container.remove_container(self, request)

    def ListContainers(self, request: Any, context: Any) -> Any:
        return list_containers.list_containers(self, request)

    def StreamContainers(self, request: Any, context: Any) -> Iterator[Any]:
        return list_containers.stream_containers(self, request, context)

    def ContainerStatus(self, request: Any, context: Any) -> Any:
        return container_status.container_status(self, request)

    def ExecSync(self, request: Any, context: Any) -> Any:
        return exec_sync.exec_sync(self, request)

    def Exec(self, request: Any, context: Any) -> Any:
        return streaming.exec_(self, request)

    def Attach(self, request: Any, context: Any) -> Any:
        return streaming.attach(self, request)

    def PortForward(self, request: Any, context: Any) -> Any:
        return streaming.port_forward(self, request)

    def UpdateContainerResources(self, request: Any, context: Any) -> Any:
        return update_container_resources.update_container_resources(self, request)

    def ReopenContainerLog(self, request: Any, context: Any) -> Any:
        return reopen_container_log.reopen_container_log(self, request)

    def ContainerStats(self, request: Any, context: Any) -> Any:
        return container_stats.container_stats(self, request)

    def ListContainerStats(self, request: Any, context: Any) -> Any:
        return container_stats.list_container_stats(self, request)

    def StreamContainerStats(self, request: Any, context: Any) -> Iterator[Any]:
        return container_stats.stream_container_stats(self, request, context)

    def PodSandboxStats(self, request: Any, context: Any) -> Any:
        return pod_sandbox_stats.pod_sandbox_stats(self, request)

    def ListPodSandboxStats(self, request: Any, context: Any) -> Any:
        return pod_sandbox_stats.list_pod_sandbox_stats(self, request)

    def StreamPodSandboxStats(self, request: Any, context: Any) -> Iterator[Any]:
        return pod_sandbox_stats.stream_pod_sandbox_stats(self, request, context)

    def ListMetricDescriptors(self, request: Any, context: Any) -> Any:
        return pod_sandbox_metrics.list_metric_descriptors(self, request)

    def ListPodSandboxMetrics(self, request: Any, context: Any) -> Any:
        return pod_sandbox_metrics.list_pod_sandbox_metrics(self, request)

    def StreamPodSandboxMetrics(self, request: Any, context: Any) -> Iterator[Any]:
        return pod_sandbox_metrics.stream_pod_sandbox_metrics(self, request, context)

    def CheckpointContainer(self, request: Any, context: Any) -> Any:
        return checkpoint_container.checkpoint_container(self, request)

    def GetContainerEvents(self, request: Any, context: Any) -> Iterator[Any]:
        return get_container_events.get_container_events(self, request, context)

    def RuntimeConfig(self, request: Any, context: Any) -> Any:
        return runtime_config.runtime_config(self, request)

    def UpdateRuntimeConfig(self, request: Any, context: Any) -> Any:
        return runtime_config.update_runtime_config(self, request)

