"""ListPodSandbox, StreamPodSandboxes: pods filtered by id (or id prefix), state and labels.

A pod's message is built once while its record stays the same (``message_memo``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.pod_sandbox_status import to_status
from runtime.records import SandboxRecord

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_pod_sandbox(svc: RuntimeService, request: api_pb2.ListPodSandboxRequest) -> api_pb2.ListPodSandboxResponse:
    return api_pb2.ListPodSandboxResponse(items=list(pod_sandboxes(svc, request.filter)))


def stream_pod_sandboxes(svc: RuntimeService, request: api_pb2.StreamPodSandboxesRequest,
                         context: Any) -> Iterator[api_pb2.StreamPodSandboxesResponse]:
    return stream_listing(pod_sandboxes(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamPodSandboxesResponse(pod_sandboxes=chunk))


def pod_sandboxes(svc: RuntimeService, wanted: api_pb2.PodSandboxFilter) -> Iterator[api_pb2.PodSandbox]:
    for pod in svc.pod_messages.build(svc.pods.all(), lambda _: None):
        if wanted.id and not pod.id.startswith(wanted.id):
            continue
        if wanted.HasField("state") and pod.state != wanted.state.state:
            continue
        if all(pod.labels.get(k) == v for k, v in wanted.label_selector.items()):
            yield pod


def pod_message(record: SandboxRecord, _: None) -> api_pb2.PodSandbox:
    status = to_status(record)
    return api_pb2.PodSandbox(
        id=status.id, metadata=status.metadata, state=status.state, created_at=status.created_at,
        labels=status.labels, annotations=status.annotations, runtime_handler=status.runtime_handler)
