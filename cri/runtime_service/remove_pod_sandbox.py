"""RemovePodSandbox: stop and remove the pod's containers, then everything of the pod itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def remove_pod_sandbox(svc: RuntimeService,
                       request: api_pb2.RemovePodSandboxRequest) -> api_pb2.RemovePodSandboxResponse:
    with svc.metrics.sandboxes.time("remove"):
        svc.pods.remove(request.pod_sandbox_id)  # idempotent: an unknown pod is success
    return api_pb2.RemovePodSandboxResponse()
