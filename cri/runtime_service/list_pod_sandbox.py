"""ListPodSandbox, StreamPodSandboxes: pods filtered by id (or id prefix), state and labels.

kubelet lists every pod each second (its pod lifecycle relist): each pod's message is built once and kept
while its record stays the same object (the record parsed from an unchanged document is handed out again,
``runtime.parsed``).
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
    for pod in svc.pod_messages.build(svc.pods.all()):
        if wanted.id and not pod.id.startswith(wanted.id):
            continue
        if wanted.HasField("state") and pod.state != wanted.state.state:
            continue
        if all(pod.labels.get(k) == v for k, v in wanted.label_selector.items()):
            yield pod


class PodMessages:
    """The CRI PodSandbox of each record, as last built. Messages handed out are shared: callers copy them
    into their answers (as a repeated field does) and never change them."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[SandboxRecord, api_pb2.PodSandbox]] = {}

    def build(self, records: list[SandboxRecord]) -> list[api_pb2.PodSandbox]:
        """The messages of ``records``, every pod: those of pods no longer listed are dropped."""
        known = self._built
        kept: dict[str, tuple[SandboxRecord, api_pb2.PodSandbox]] = {}
        for record in records:
            entry = known.get(record.id)
            kept[record.id] = entry if entry is not None and entry[0] is record else (record, _message(record))
        self._built = kept  # one assignment: a listing running beside this one keeps what it started with
        return [message for _, message in kept.values()]


def _message(record: SandboxRecord) -> api_pb2.PodSandbox:
    status = to_status(record)
    return api_pb2.PodSandbox(
        id=status.id, metadata=status.metadata, state=status.state, created_at=status.created_at,
        labels=status.labels, annotations=status.annotations, runtime_handler=status.runtime_handler)
