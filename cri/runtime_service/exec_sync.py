"""ExecSync: run a command in a running container and return its exit code and output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from cri.constants import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def exec_sync(svc: RuntimeService, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
    code, stdout, stderr = svc.containers.exec_sync(request.container_id, list(request.cmd), float(request.timeout))
    stdout, stderr = fit_in_one_message(stdout, stderr)
    return api_pb2.ExecSyncResponse(exit_code=code, stdout=stdout, stderr=stderr)


# Room for the message's own framing and the exit code.
_OVERHEAD = 64 << 10


def fit_in_one_message(stdout: bytes, stderr: bytes) -> tuple[bytes, bytes]:
    """Both outputs truncated so the answer fits in one gRPC message; stdout keeps at least half of it.

    Each stream is capped at 16 MiB by the runtime (as containerd's), which alone would fill the message.
    """
    budget = MAX_MESSAGE_BYTES - _OVERHEAD
    stderr = stderr[: max(budget - len(stdout), budget // 2)]
    return stdout[: budget - len(stderr)], stderr
