"""RemoveContainer: kill it if it runs, then its runtime state, rootfs mount, snapshot and bundle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def remove_container(svc: RuntimeService,
                     request: api_pb2.RemoveContainerRequest) -> api_pb2.RemoveContainerResponse:
    with svc.metrics.containers.time("remove"):
        svc.containers.remove(request.container_id)  # idempotent: an unknown container is success
    return api_pb2.RemoveContainerResponse()
