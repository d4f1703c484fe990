"""RunPodSandbox: namespaces, pod files and the network, then the pod is ready."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def run_pod_sandbox(svc: RuntimeService, request: api_pb2.RunPodSandboxRequest) -> api_pb2.RunPodSandboxResponse:
    with svc.metrics.sandboxes.time("run"):
        record = svc.pods.run(request.config, request.runtime_handler)
    return api_pb2.RunPodSandboxResponse(pod_sandbox_id=record.id)
