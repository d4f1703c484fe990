"""CreateContainer: snapshot, bundle and a created (not yet started) container under conmon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def create_container(svc: RuntimeService,
                     request: api_pb2.CreateContainerRequest) -> api_pb2.CreateContainerResponse:
    with svc.metrics.containers.time("create"):
        sandbox_id = svc.pods.get(request.pod_sandbox_id).id
        with svc.pods.locked(sandbox_id):
            record = svc.containers.create(svc.pods.get(sandbox_id), request.config)
    return api_pb2.CreateContainerResponse(container_id=record.id)
