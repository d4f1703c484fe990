"""ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics: the metrics kubelet serves at
/metrics/cadvisor when it takes pod and container stats from the CRI (feature gate PodAndContainerStatsFromCRI).

The names and labels are cAdvisor's, so dashboards built on them keep working; pod-level series carry
container="POD", as cAdvisor labels a pause container. Only whole-number metrics are offered: a CRI metric
value is an unsigned integer, so cAdvisor's container_cpu_usage_seconds_total (fractional seconds) is not.
kubelet reads the descriptors once, at its start; each metric names one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.container_status import image_names
from cri.runtime_service.pod_sandbox_stats import to_pod_stats
from runtime.records import SandboxRecord, SandboxState

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

LABELS = ("container", "id", "image", "name", "namespace", "pod")
INTERFACE_LABELS = (*LABELS, "interface")
POD_CONTAINER = "POD"
GAUGE = api_pb2.MetricType.GAUGE
COUNTER = api_pb2.MetricType.COUNTER


@dataclass(frozen=True, slots=True)
class _Memory:
    name: str
    help: str
    value: Callable[[api_pb2.MemoryUsage], int]


@dataclass(frozen=True, slots=True)
class _Traffic:
    name: str
    help: str
    value: Callable[[api_pb2.NetworkInterfaceUsage], int]


MEMORY = (
    _Memory("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of "
            "when it was accessed", lambda m: m.usage_bytes.value),
    _Memory("container_memory_working_set_bytes", "Current working set in bytes", lambda m: m.working_set_bytes.value),
    _Memory("container_memory_rss", "Size of RSS in bytes", lambda m: m.rss_bytes.value),
)
TRAFFIC = (
    _Traffic("container_network_receive_bytes_total", "Cumulative count of bytes received",
             lambda i: i.rx_bytes.value),
    _Traffic("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving",
             lambda i: i.rx_errors.value),
    _Traffic("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted",
             lambda i: i.tx_bytes.value),
    _Traffic("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting",
             lambda i: i.tx_errors.value),
)


def list_metric_descriptors(svc: RuntimeService, request: api_pb2.ListMetricDescriptorsRequest
                            ) -> api_pb2.ListMetricDescriptorsResponse:
    descriptors = [api_pb2.MetricDescriptor(name=m.name, help=m.help, label_keys=LABELS) for m in MEMORY]
    descriptors += [api_pb2.MetricDescriptor(name=t.name, help=t.help, label_keys=INTERFACE_LABELS)
                    for t in TRAFFIC]
    return api_pb2.ListMetricDescriptorsResponse(descriptors=descriptors)


def list_pod_sandbox_metrics(svc: RuntimeService, request: api_pb2.ListPodSandboxMetricsRequest
                             ) -> api_pb2.ListPodSandboxMetricsResponse:
    return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=list(pods_metrics(svc)))


def stream_pod_sandbox_metrics(svc: RuntimeService, request: api_pb2.StreamPodSandboxMetricsRequest,
                               context: Any) -> Iterator[api_pb2.StreamPodSandboxMetricsResponse]:
    return stream_listing(pods_metrics(svc), context,
                          lambda chunk: api_pb2.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=chunk))


def pods_metrics(svc: RuntimeService) -> Iterator[api_pb2.PodSandboxMetrics]:
    # Like cAdvisor, which sees only cgroups that exist: ready pods and the containers that run in them.
    # The image as ContainerStatus names it (kubelet creates containers by image id, not by name).
    index = svc.images.by_id()
    images = {c.id: image_names(index, c)[0] for c in svc.containers.all()}
    for pod in svc.pods.all():
        if pod.state == SandboxState.READY:
            yield _pod_metrics(svc, pod, images)


def _pod_metrics(svc: RuntimeService, pod: SandboxRecord, images: dict[str, str]) -> api_pb2.PodSandboxMetrics:
    stats = to_pod_stats(svc, pod)
    meta = pod.config.metadata
    pod_labels = [POD_CONTAINER, pod.id, "", pod.name, meta.namespace, meta.name]
    metrics = api_pb2.PodSandboxMetrics(pod_sandbox_id=pod.id, metrics=list(_traffic(stats.linux.network,
                                                                                      pod_labels)))
    for container in stats.linux.containers:
        if not container.memory.timestamp:
            continue  # not running: no cgroup to measure
        attributes = container.attributes
        labels = [attributes.metadata.name, attributes.id, images.get(attributes.id, ""), attributes.id,
                  meta.namespace, meta.name]
        metrics.container_metrics.append(api_pb2.ContainerMetrics(
            container_id=attributes.id,
            metrics=[_metric(m.name, GAUGE, labels, m.value(container.memory)) for m in MEMORY]))
    return metrics


def _traffic(network: api_pb2.NetworkUsage, labels: list[str]) -> Iterator[api_pb2.Metric]:
    interfaces = ([network.default_interface] if network.HasField("default_interface") else [])
    for interface in [*interfaces, *network.interfaces]:
        for traffic in TRAFFIC:
            yield _metric(traffic.name, COUNTER, [*labels, interface.name], traffic.value(interface))


def _metric(name: str, kind: api_pb2.MetricType, labels: list[str], value: int) -> api_pb2.Metric:
    # Timestamp 0: gathered now, not cached.
    return api_pb2.Metric(name=name, metric_type=kind, label_values=labels, value=api_pb2.UInt64Value(value=value))

