"""RuntimeConfig and UpdateRuntimeConfig: the cgroup driver kubelet must use, and the pod CIDR."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

log = structlog.get_logger(__name__)


def runtime_config(svc: RuntimeService, request: api_pb2.RuntimeConfigRequest) -> api_pb2.RuntimeConfigResponse:
    # runc is driven with cgroupfs paths (no systemd), so kubelet must use the cgroupfs driver too.
    return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(
        cgroup_driver=api_pb2.CgroupDriver.CGROUPFS))


def update_runtime_config(svc: RuntimeService, request: api_pb2.UpdateRuntimeConfigRequest
                          ) -> api_pb2.UpdateRuntimeConfigResponse:
    cidr = request.runtime_config.network_config.pod_cidr
    if cidr:
        # As containerd: remembered and reported; a CNI config template would use it.
        svc.pod_cidr = cidr
        log.info("runtime.pod_cidr", pod_cidr=cidr)
    return api_pb2.UpdateRuntimeConfigResponse()
