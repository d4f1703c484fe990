"""Status: the runtime and network conditions kubelet waits on before scheduling pods, and the runtime
handlers with their features (kubelet copies them into the node's status.runtimeHandlers and status.features).

NetworkReady follows the CNI configuration: false, with the reason, while no
usable network config exists, as with containerd.
"""

from __future__ import annotations

import json
import platform
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from runtime import features

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"
NETWORK_NOT_READY_REASON = "NetworkPluginNotReady"


def status(svc: RuntimeService, request: api_pb2.StatusRequest) -> api_pb2.StatusResponse:
    network = svc.cni.status()
    conditions = [
        api_pb2.RuntimeCondition(type=RUNTIME_READY, status=True),
        api_pb2.RuntimeCondition(type=NETWORK_READY, status=network.ready,
                                 reason="" if network.ready else NETWORK_NOT_READY_REASON,
                                 message="" if network.ready else f"cni plugin not initialized: {network.reason}"),
    ]
    response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=conditions),
                                      runtime_handlers=_handlers(svc), features=_features())
    if request.verbose:
        response.info.update(_info(svc, network.reason or "OK"))
    return response


def _handlers(svc: RuntimeService) -> list[api_pb2.RuntimeHandler]:
    return [api_pb2.RuntimeHandler(name=name, features=api_pb2.RuntimeHandlerFeatures(
                recursive_read_only_mounts=handler.recursive_read_only_mounts,
                user_namespaces=handler.user_namespaces))
            for name, handler in svc.handlers.reported()]


def _features() -> api_pb2.RuntimeFeatures:
    runtime = features.RUNTIME
    return api_pb2.RuntimeFeatures(supplemental_groups_policy=runtime.supplemental_groups_policy,
                                   user_namespaces_host_network=runtime.user_namespaces_host_network)


def _info(svc: RuntimeService, cni_status: str) -> dict[str, str]:
    # Values are JSON documents, as containerd's are. Only paths and names:
    # registry credentials stay out of anything sent over the socket.
    config = svc.config
    summary = {
        "root": str(config.root),
        "state": str(config.state),
        "address": str(config.socket),
        "snapshotter": config.image.snapshotter,
        "registryConfigPath": str(config.registry.config_path),
        "cniConfDir": str(config.cni_conf_dir),
        "cniBinDirs": [str(d) for d in config.cni_bin_dirs],
        "podCIDR": svc.pod_cidr,
    }
    return {
        "config": json.dumps(summary),
        "lastCNILoadStatus": json.dumps(cni_status),
        "python": json.dumps(platform.python_version()),
    }
