"""PodSandboxStats, ListPodSandboxStats: the sum of the pod's containers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.container_stats import to_stats
from runtime.records import SandboxRecord

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def pod_sandbox_stats(svc: RuntimeService,
                      request: api_pb2.PodSandboxStatsRequest) -> api_pb2.PodSandboxStatsResponse:
    return api_pb2.PodSandboxStatsResponse(stats=to_pod_stats(svc, svc.pods.get(request.pod_sandbox_id)))


def list_pod_sandbox_stats(svc: RuntimeService,
                           request: api_pb2.ListPodSandboxStatsRequest) -> api_pb2.ListPodSandboxStatsResponse:
    wanted = request.filter if request.HasField("filter") else api_pb2.PodSandboxStatsFilter()
    stats = []
    for record in svc.pods.all():
        labels = record.config.labels
        if wanted.id and not record.id.startswith(wanted.id):
            continue
        if any(labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        stats.append(to_pod_stats(svc, record))
    return api_pb2.ListPodSandboxStatsResponse(stats=stats)


def to_pod_stats(svc: RuntimeService, record: SandboxRecord) -> api_pb2.PodSandboxStats:
    config = record.config
    pod = api_pb2.PodSandboxStats(attributes=api_pb2.PodSandboxAttributes(
        id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations))
    containers = [to_stats(svc, c) for c in svc.containers.all(record.id)]
    now = time.time_ns()
    pod.linux.cpu.timestamp = now
    pod.linux.cpu.usage_core_nano_seconds.value = sum(c.cpu.usage_core_nano_seconds.value for c in containers)
    pod.linux.memory.timestamp = now
    pod.linux.memory.working_set_bytes.value = sum(c.memory.working_set_bytes.value for c in containers)
    pod.linux.memory.usage_bytes.value = sum(c.memory.usage_bytes.value for c in containers)
    pod.linux.containers.extend(containers)
    return pod
