"""The RuntimeService servicer: each method delegates to the module named for its RPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cri.api.runtime.v1 import api_pb2_grpc
from cri.config import Config
from cri.constants import CRI_NAMESPACE
from cri.image_service.catalog import CRIImage
from cri.image_service.service import ImageService
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
from cri.streaming.backend import StreamBackend
from cri.streaming.server import StreamServer
from errdefs import NotFound
from runtime import cgroups
from runtime.cdi import CDIRegistry
from runtime.cgroups import CgroupDriver
from runtime.cni import CNI
from runtime.containers import ContainerManager, ImageInfo
from runtime.events import EventBus
from runtime.features import HandlerFeatures
from runtime.handlers import HandlerSpec, probe_handlers
from runtime.oci import OCIRuntime
from runtime.pods import PodManager
from runtime.stats import CpuRates


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, config: Config, images: ImageService, metrics: Metrics | None = None) -> None:
        self.config = config
        self._images = images
        self.metrics = metrics if metrics is not None else images.metrics
        self.events = EventBus()
        self.cni = CNI(config.cni_conf_dir, config.root / "io.containerd.grpc.v1.cri" / "cni-results",
                       config.cni_bin_dirs, timed=self.metrics.cni.time)
        self.cgroup_driver = CgroupDriver(config.cgroup_driver)
        cgroups.require(self.cgroup_driver)
        self.handlers = probe_handlers(_handler_specs(config), config.default_runtime, config.state,
                                       Path(images.snapshotter.root),
                                       systemd_cgroup=self.cgroup_driver == CgroupDriver.SYSTEMD)
        self.oci = OCIRuntime(config.state, runtimes=self.handlers.runtimes(), default_runtime=config.default_runtime)
        self.pods = PodManager(images.db, CRI_NAMESPACE, config.state, self.cni, self.handlers, self.cgroup_driver)
        self.containers = ContainerManager(images.db, CRI_NAMESPACE, self.oci, images.snapshotter,
                                           images.snapshotter_name, self.images, self.events, self.handlers,
                                           CDIRegistry(config.cdi.folders), self.cgroup_driver)
        self.containers.watch_exits()
        self.containers.sweep_image_volumes()
        self.pods.recover()
        self.pods.stop_containers = self.containers.stop_all
        self.pods.remove_containers = self.containers.remove_all
        self.pod_cidr = ""
        self.cpu_rates = CpuRates()  # the sample before, per container and pod, for usage_nano_cores
        self.streams = StreamServer(config.stream, StreamBackend(self.containers, self.pods, self.oci), config.state,
                                    self.metrics)

    def images(self, ref: str) -> ImageInfo:
        try:
            return _info(self._images.catalog.get(ref))
        except NotFound:
            raise NotFound(f"image {ref!r} not found: pull it first") from None

    def image_index(self) -> dict[str, ImageInfo]:
        """Every image by id, for answers that name the images of many containers."""
        return {image.id: _info(image) for image in self._images.catalog.all()}

    def close(self) -> None:
        self.containers.close()
        self.events.close()

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


def _info(image: CRIImage) -> ImageInfo:
    return ImageInfo(image.id, image.chain_id, image.config.raw, image.repo_tags, image.repo_digests)


def _handler_specs(config: Config) -> list[HandlerSpec]:
    specs = []
    for name, settings in config.runtimes.items():
        allowed = settings.features
        specs.append(HandlerSpec(
            name, settings.binary, Path(settings.root) if settings.root else config.state / name,
            HandlerFeatures(allowed.recursive_read_only_mounts, allowed.user_namespaces), optional=settings.optional))
    return specs
