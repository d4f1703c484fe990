"""ExecSync: run a command in a running container and return its exit code and output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def exec_sync(svc: RuntimeService, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
    code, stdout, stderr = svc.containers.exec_sync(request.container_id, list(request.cmd), float(request.timeout))
    return api_pb2.ExecSyncResponse(exit_code=code, stdout=stdout, stderr=stderr)
