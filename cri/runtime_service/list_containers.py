"""ListContainers, StreamContainers: containers filtered by id (or prefix), state, pod and labels.

A container's message is built once while its record and its image's names stay the same (``message_memo``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.container_status import STATES, image_names
from runtime.records import ContainerRecord

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_containers(svc: RuntimeService, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
    return api_pb2.ListContainersResponse(containers=list(containers(svc, request.filter)))


def stream_containers(svc: RuntimeService, request: api_pb2.StreamContainersRequest,
                      context: Any) -> Iterator[api_pb2.StreamContainersResponse]:
    return stream_listing(containers(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamContainersResponse(containers=chunk))


def containers(svc: RuntimeService, wanted: api_pb2.ContainerFilter) -> Iterator[api_pb2.Container]:
    records = svc.containers.all(wanted.pod_sandbox_id)
    images = svc.images.by_id()
    built = svc.container_messages.build(records, lambda record: image_names(images, record),
                                         whole=not wanted.pod_sandbox_id)
    for container in built:
        if wanted.id and not container.id.startswith(wanted.id):
            continue
        if wanted.HasField("state") and container.state != wanted.state.state:
            continue
        if any(container.labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        yield container


def container_message(record: ContainerRecord, names: tuple[str, str]) -> api_pb2.Container:
    config = record.config
    image_name, image_ref = names
    return api_pb2.Container(
        id=record.id, pod_sandbox_id=record.sandbox_id, metadata=config.metadata,
        image=api_pb2.ImageSpec(image=image_name), image_ref=image_ref, image_id=record.image_id,
        state=STATES[record.state], created_at=record.created_at, labels=config.labels,
        annotations=config.annotations)
