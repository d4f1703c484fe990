"""ListPodSandbox, StreamPodSandboxes: pods filtered by id (or id prefix), state and labels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.pod_sandbox_status import to_status

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_pod_sandbox(svc: RuntimeService, request: api_pb2.ListPodSandboxRequest) -> api_pb2.ListPodSandboxResponse:
    return api_pb2.ListPodSandboxResponse(items=list(pod_sandboxes(svc, request.filter)))


def stream_pod_sandboxes(svc: RuntimeService, request: api_pb2.StreamPodSandboxesRequest,
                         context: Any) -> Iterator[api_pb2.StreamPodSandboxesResponse]:
    return stream_listing(pod_sandboxes(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamPodSandboxesResponse(pod_sandboxes=chunk))


def pod_sandboxes(svc: RuntimeService, wanted: api_pb2.PodSandboxFilter) -> Iterator[api_pb2.PodSandbox]:
    for record in svc.pods.all():
        status = to_status(record)
        if not _matches(status, wanted):
            continue
        yield api_pb2.PodSandbox(
            id=status.id, metadata=status.metadata, state=status.state, created_at=status.created_at,
            labels=status.labels, annotations=status.annotations, runtime_handler=status.runtime_handler)


def _matches(status: api_pb2.PodSandboxStatus, wanted: api_pb2.PodSandboxFilter) -> bool:
    if wanted.id and not status.id.startswith(wanted.id):
        return False
    if wanted.HasField("state") and status.state != wanted.state.state:
        return False
    return all(status.labels.get(k) == v for k, v in wanted.label_selector.items())
