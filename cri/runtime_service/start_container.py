"""StartContainer: let the created container's process run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def start_container(svc: RuntimeService, request: api_pb2.StartContainerRequest) -> api_pb2.StartContainerResponse:
    with svc.metrics.containers.time("start"):
        svc.containers.start(request.container_id)
    return api_pb2.StartContainerResponse()
