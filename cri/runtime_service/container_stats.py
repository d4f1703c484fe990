"""ContainerStats, ListContainerStats, StreamContainerStats: CPU and memory from the cgroup, the writable layer
as last measured (``cri.snapshot_usage``, as containerd reads it from its snapshot store).

usage_nano_cores is the rate since the previous sample of the same container, whoever asked for it, as
containerd computes it (0 for the first); available_bytes is the memory limit less the working set (0 when
unlimited).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from runtime.records import ContainerRecord, ContainerState
from runtime.stats import cgroup_stats

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def container_stats(svc: RuntimeService, request: api_pb2.ContainerStatsRequest) -> api_pb2.ContainerStatsResponse:
    return api_pb2.ContainerStatsResponse(stats=to_stats(svc, svc.containers.get(request.container_id)))


def list_container_stats(svc: RuntimeService,
                         request: api_pb2.ListContainerStatsRequest) -> api_pb2.ListContainerStatsResponse:
    return api_pb2.ListContainerStatsResponse(stats=list(containers_stats(svc, request.filter)))


def stream_container_stats(svc: RuntimeService, request: api_pb2.StreamContainerStatsRequest,
                           context: Any) -> Iterator[api_pb2.StreamContainerStatsResponse]:
    return stream_listing(containers_stats(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamContainerStatsResponse(container_stats=chunk))


def containers_stats(svc: RuntimeService, wanted: api_pb2.ContainerStatsFilter) -> Iterator[api_pb2.ContainerStats]:
    for record in svc.containers.all(wanted.pod_sandbox_id):
        config = record.config
        if wanted.id and not record.id.startswith(wanted.id):
            continue
        if any(config.labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        yield to_stats(svc, record)


def to_stats(svc: RuntimeService, record: ContainerRecord) -> api_pb2.ContainerStats:
    config = record.config
    stats = api_pb2.ContainerStats(attributes=api_pb2.ContainerAttributes(
        id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations))
    usage = cgroup_stats(record.pid) if record.state == ContainerState.RUNNING else None
    if usage is not None:
        stats.cpu.timestamp = usage.timestamp
        stats.cpu.usage_core_nano_seconds.value = usage.cpu_usage_ns
        stats.cpu.usage_nano_cores.value = svc.cpu_rates.rate(record.id, usage.cpu_usage_ns, usage.timestamp)
        stats.memory.timestamp = usage.timestamp
        stats.memory.working_set_bytes.value = usage.memory_working_set
        stats.memory.available_bytes.value = usage.memory_available
        stats.memory.usage_bytes.value = usage.memory_usage
        stats.memory.rss_bytes.value = usage.memory_rss
        stats.memory.page_faults.value = usage.page_faults
        stats.memory.major_page_faults.value = usage.major_page_faults
    layer = svc.snapshot_usage.get(record.snapshot_key)
    stats.writable_layer.timestamp = layer.timestamp
    stats.writable_layer.fs_id.mountpoint = layer.folder
    stats.writable_layer.used_bytes.value = layer.usage.size
    stats.writable_layer.inodes_used.value = layer.usage.inodes
    return stats
