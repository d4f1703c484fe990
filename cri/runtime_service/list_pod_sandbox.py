"""ListPodSandbox: pods filtered by id (or id prefix), state and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.pod_sandbox_status import to_status

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_pod_sandbox(svc: RuntimeService, request: api_pb2.ListPodSandboxRequest) -> api_pb2.ListPodSandboxResponse:
    wanted = request.filter if request.HasField("filter") else None
    items = []
    for record in svc.pods.all():
        status = to_status(record)
        if wanted is not None and not _matches(status, wanted):
            continue
        items.append(api_pb2.PodSandbox(
            id=status.id, metadata=status.metadata, state=status.state, created_at=status.created_at,
            labels=status.labels, annotations=status.annotations, runtime_handler=status.runtime_handler))
    return api_pb2.ListPodSandboxResponse(items=items)


def _matches(status: api_pb2.PodSandboxStatus, wanted: api_pb2.PodSandboxFilter) -> bool:
    if wanted.id and not status.id.startswith(wanted.id):
        return False
    if wanted.HasField("state") and status.state != wanted.state.state:
        return False
    return all(status.labels.get(k) == v for k, v in wanted.label_selector.items())
