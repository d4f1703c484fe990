"""ReopenContainerLog: conmon starts a fresh log file after kubelet rotated the old one away."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def reopen_container_log(svc: RuntimeService, request: api_pb2.ReopenContainerLogRequest
                         ) -> api_pb2.ReopenContainerLogResponse:
    svc.containers.reopen_log(request.container_id)
    return api_pb2.ReopenContainerLogResponse()
