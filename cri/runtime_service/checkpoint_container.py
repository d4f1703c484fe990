"""CheckpointContainer: refused with the reason, CRIU's own where it cannot run on this host."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from runtime.criu import require_checkpoint

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def checkpoint_container(svc: RuntimeService,
                         request: api_pb2.CheckpointContainerRequest) -> api_pb2.CheckpointContainerResponse:
    svc.containers.get(request.container_id)  # NotFound first, as for any request naming a container
    require_checkpoint()
    return api_pb2.CheckpointContainerResponse()
