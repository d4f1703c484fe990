"""PodSandboxStats, ListPodSandboxStats, StreamPodSandboxStats: the pod's CPU and memory, its network traffic
and its containers.

CPU, memory and the process count come from the pod's own cgroup when it has a cgroup parent (kubelet gives
every pod one), else CPU and memory are the sum of its containers'. The network counters are read in the
pod's network namespace: eth0 as the default interface, the others besides the loopback as further
interfaces; without eth0 there is no network usage at all. This is what kubelet's PodAndContainerStatsFromCRI
path reads instead of cAdvisor's view of a pause container, which crishim has not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.container_stats import to_stats
from runtime.cgroups import parent_folder
from runtime.netstats import InterfaceStats, network_stats
from runtime.records import ContainerState, SandboxRecord, SandboxState
from runtime.stats import CgroupStats, parent_cgroup_stats

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def pod_sandbox_stats(svc: RuntimeService,
                      request: api_pb2.PodSandboxStatsRequest) -> api_pb2.PodSandboxStatsResponse:
    return api_pb2.PodSandboxStatsResponse(stats=to_pod_stats(svc, svc.pods.get(request.pod_sandbox_id)))


def list_pod_sandbox_stats(svc: RuntimeService,
                           request: api_pb2.ListPodSandboxStatsRequest) -> api_pb2.ListPodSandboxStatsResponse:
    return api_pb2.ListPodSandboxStatsResponse(stats=list(pods_stats(svc, request.filter)))


def stream_pod_sandbox_stats(svc: RuntimeService, request: api_pb2.StreamPodSandboxStatsRequest,
                             context: Any) -> Iterator[api_pb2.StreamPodSandboxStatsResponse]:
    return stream_listing(pods_stats(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamPodSandboxStatsResponse(pod_sandbox_stats=chunk))


def pods_stats(svc: RuntimeService, wanted: api_pb2.PodSandboxStatsFilter) -> Iterator[api_pb2.PodSandboxStats]:
    for record in svc.pods.all():
        labels = record.config.labels
        if wanted.id and not record.id.startswith(wanted.id):
            continue
        if any(labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        yield to_pod_stats(svc, record)


def to_pod_stats(svc: RuntimeService, record: SandboxRecord) -> api_pb2.PodSandboxStats:
    config = record.config
    pod = api_pb2.PodSandboxStats(attributes=api_pb2.PodSandboxAttributes(
        id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations))
    records = svc.containers.all(record.id)
    containers = [to_stats(svc, c) for c in records]
    parent = parent_folder(svc.cgroup_driver, record.cgroup_parent)
    own = parent_cgroup_stats(parent) if parent else None
    if own is not None:
        _own_usage(svc, pod.linux, record.id, own)
    else:
        _summed_usage(svc, pod.linux, record.id, containers)
    if record.netns and record.state == SandboxState.READY:
        running = [c.pid for c in records if c.state == ContainerState.RUNNING and c.pid]
        _network(pod.linux.network, Path(record.netns), running)
    pod.linux.containers.extend(containers)
    return pod


def _own_usage(svc: RuntimeService, linux: api_pb2.LinuxPodSandboxStats, pod_id: str, usage: CgroupStats) -> None:
    linux.cpu.timestamp = usage.timestamp
    linux.cpu.usage_core_nano_seconds.value = usage.cpu_usage_ns
    linux.cpu.usage_nano_cores.value = svc.cpu_rates.rate(pod_id, usage.cpu_usage_ns, usage.timestamp)
    memory = linux.memory
    memory.timestamp = usage.timestamp
    memory.working_set_bytes.value = usage.memory_working_set
    memory.available_bytes.value = usage.memory_available
    memory.usage_bytes.value = usage.memory_usage
    memory.rss_bytes.value = usage.memory_rss
    memory.page_faults.value = usage.page_faults
    memory.major_page_faults.value = usage.major_page_faults
    if usage.process_count is not None:
        linux.process.timestamp = usage.timestamp
        linux.process.process_count.value = usage.process_count


def _summed_usage(svc: RuntimeService, linux: api_pb2.LinuxPodSandboxStats, pod_id: str,
                  containers: list[api_pb2.ContainerStats]) -> None:
    # No cgroup of the pod's own, so no pod limit or process count either: those stay unset.
    now = time.time_ns()
    cpu_ns = sum(c.cpu.usage_core_nano_seconds.value for c in containers)
    linux.cpu.timestamp = now
    linux.cpu.usage_core_nano_seconds.value = cpu_ns
    linux.cpu.usage_nano_cores.value = svc.cpu_rates.rate(pod_id, cpu_ns, now)
    memory = linux.memory
    memory.timestamp = now
    memory.working_set_bytes.value = sum(c.memory.working_set_bytes.value for c in containers)
    memory.usage_bytes.value = sum(c.memory.usage_bytes.value for c in containers)
    memory.rss_bytes.value = sum(c.memory.rss_bytes.value for c in containers)
    memory.page_faults.value = sum(c.memory.page_faults.value for c in containers)
    memory.major_page_faults.value = sum(c.memory.major_page_faults.value for c in containers)


def _network(usage: api_pb2.NetworkUsage, netns: Path, pids: list[int]) -> None:
    stats = network_stats(netns, pids)
    # kubelet reads the default interface of every network usage it is given (a nil dereference that kills
    # it otherwise), so a pod without eth0 reports none: so is a pod StopPodSandbox has detached from CNI
    # but not yet marked not ready.
    if stats is None or stats.default is None:
        return
    usage.timestamp = stats.timestamp
    usage.default_interface.CopyFrom(_interface(stats.default))
    usage.interfaces.extend(_interface(i) for i in stats.others)


def _interface(stats: InterfaceStats) -> api_pb2.NetworkInterfaceUsage:
    usage = api_pb2.NetworkInterfaceUsage(name=stats.name)
    usage.rx_bytes.value, usage.rx_errors.value = stats.rx_bytes, stats.rx_errors
    usage.tx_bytes.value, usage.tx_errors.value = stats.tx_bytes, stats.tx_errors
    return usage
