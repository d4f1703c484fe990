"""UpdateContainerResources: new CPU and memory limits for a live container (runc update)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def update_container_resources(svc: RuntimeService, request: api_pb2.UpdateContainerResourcesRequest
                               ) -> api_pb2.UpdateContainerResourcesResponse:
    svc.containers.update_resources(request.container_id, request.linux)
    return api_pb2.UpdateContainerResourcesResponse()
