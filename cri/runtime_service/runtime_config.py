"""RuntimeConfig and UpdateRuntimeConfig: the cgroup driver kubelet must use, and the pod CIDR."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from cri.api.runtime.v1 import api_pb2
from runtime.cgroups import CgroupDriver

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

log = structlog.get_logger(__name__)

_DRIVERS = {CgroupDriver.CGROUPFS: api_pb2.CgroupDriver.CGROUPFS, CgroupDriver.SYSTEMD: api_pb2.CgroupDriver.SYSTEMD}


def runtime_config(svc: RuntimeService, request: api_pb2.RuntimeConfigRequest) -> api_pb2.RuntimeConfigResponse:
    # kubelet names pods' cgroups for the driver crishim drives runc with (cgroup_driver), so it must use it too.
    return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(
        cgroup_driver=_DRIVERS[svc.cgroup_driver]))


def update_runtime_config(svc: RuntimeService, request: api_pb2.UpdateRuntimeConfigRequest
                          ) -> api_pb2.UpdateRuntimeConfigResponse:
    cidr = request.runtime_config.network_config.pod_cidr
    if cidr:
        # As containerd: remembered and reported; a CNI config template would use it.
        svc.pod_cidr = cidr
        log.info("runtime.pod_cidr", pod_cidr=cidr)
    return api_pb2.UpdateRuntimeConfigResponse()
