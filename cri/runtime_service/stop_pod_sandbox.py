"""StopPodSandbox: stop every container of the pod and detach its network."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from errdefs import NotFound

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def stop_pod_sandbox(svc: RuntimeService, request: api_pb2.StopPodSandboxRequest) -> api_pb2.StopPodSandboxResponse:
    # The CRI: "If there are any running containers in the sandbox, they must be forcibly terminated.
    # ... this call is idempotent, and must not return an error if all relevant resources have already
    # been reclaimed." kubelet calls it again for pods that are long gone.
    with svc.metrics.sandboxes.time("stop"), contextlib.suppress(NotFound):
        svc.pods.stop(request.pod_sandbox_id)
    return api_pb2.StopPodSandboxResponse()
