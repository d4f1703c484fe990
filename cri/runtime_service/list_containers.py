"""ListContainers, StreamContainers: containers filtered by id (or prefix), state, pod and labels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import stream_listing
from cri.runtime_service.container_status import STATES, image_names

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_containers(svc: RuntimeService, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
    return api_pb2.ListContainersResponse(containers=list(containers(svc, request.filter)))


def stream_containers(svc: RuntimeService, request: api_pb2.StreamContainersRequest,
                      context: Any) -> Iterator[api_pb2.StreamContainersResponse]:
    return stream_listing(containers(svc, request.filter), context,
                          lambda chunk: api_pb2.StreamContainersResponse(containers=chunk))


def containers(svc: RuntimeService, wanted: api_pb2.ContainerFilter) -> Iterator[api_pb2.Container]:
    images = svc.images.by_id()  # once, not per container
    for record in svc.containers.all(wanted.pod_sandbox_id):
        config = record.config
        state = STATES[record.state]
        if wanted.id and not record.id.startswith(wanted.id):
            continue
        if wanted.HasField("state") and state != wanted.state.state:
            continue
        if any(config.labels.get(k) != v for k, v in wanted.label_selector.items()):
            continue
        image_name, image_ref = image_names(images, record)
        yield api_pb2.Container(
            id=record.id, pod_sandbox_id=record.sandbox_id, metadata=config.metadata,
            image=api_pb2.ImageSpec(image=image_name), image_ref=image_ref, image_id=record.image_id, state=state,
            created_at=record.created_at, labels=config.labels, annotations=config.annotations)
