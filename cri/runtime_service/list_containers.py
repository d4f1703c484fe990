"""ListContainers: containers filtered by id (or prefix), state, pod and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.runtime_service.container_status import STATES, image_names

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def list_containers(svc: RuntimeService, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
    wanted = request.filter if request.HasField("filter") else api_pb2.ContainerFilter()
    containers = []
    images = svc.image_index()  # once, not per container
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
        containers.append(api_pb2.Container(
            id=record.id, pod_sandbox_id=record.sandbox_id, metadata=config.metadata,
            image=api_pb2.ImageSpec(image=image_name), image_ref=image_ref, image_id=record.image_id, state=state,
            created_at=record.created_at, labels=config.labels, annotations=config.annotations))
    return api_pb2.ListContainersResponse(containers=containers)
