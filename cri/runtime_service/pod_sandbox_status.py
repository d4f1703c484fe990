"""PodSandboxStatus: state, IPs, namespace modes, labels and annotations of one pod."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cri.api.runtime.v1 import api_pb2
from runtime.records import SandboxRecord, SandboxState

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def pod_sandbox_status(svc: RuntimeService,
                       request: api_pb2.PodSandboxStatusRequest) -> api_pb2.PodSandboxStatusResponse:
    record = svc.pods.get(request.pod_sandbox_id)
    response = api_pb2.PodSandboxStatusResponse(status=to_status(record))
    if request.verbose:
        response.info["info"] = json.dumps(verbose_info(record))
    return response


def to_status(record: SandboxRecord) -> api_pb2.PodSandboxStatus:
    config = record.config
    status = api_pb2.PodSandboxStatus(
        id=record.id,
        metadata=config.metadata,
        state=_state(record),
        created_at=record.created_at,
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=record.runtime_handler,
    )
    status.linux.namespaces.options.CopyFrom(config.linux.security_context.namespace_options)
    # Always present, as in containerd: a pod on the node's network has one with an empty IP.
    status.network.SetInParent()
    if record.ips:
        status.network.ip = record.ips[0]
        status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in record.ips[1:])
    return status


def verbose_info(record: SandboxRecord) -> dict[str, object]:
    return {
        "pid": record.pid_holder,
        "netNamespacePath": record.netns,
        "ipcNamespacePath": record.ipcns,
        "utsNamespacePath": record.utsns,
        "cgroupParent": record.cgroup_parent,
        "runtimeHandler": record.runtime_handler or "runc",
    }


def _state(record: SandboxRecord) -> Any:
    ready = record.state == SandboxState.READY
    return api_pb2.PodSandboxState.SANDBOX_READY if ready else api_pb2.PodSandboxState.SANDBOX_NOTREADY
