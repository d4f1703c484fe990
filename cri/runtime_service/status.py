"""Status: the runtime and network conditions kubelet waits on before scheduling pods.

The network stays not ready until CNI is wired in; kubelet then keeps pods that
need a pod network off this node, as it does with containerd before a CNI
configuration exists.
"""

from __future__ import annotations

import json
import platform

from cri.api.runtime.v1 import api_pb2
from cri.config import Config

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"
NETWORK_NOT_READY_REASON = "NetworkPluginNotReady"
NETWORK_NOT_READY_MESSAGE = "no CNI configuration"


def status(config: Config, request: api_pb2.StatusRequest) -> api_pb2.StatusResponse:
    response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=_conditions()))
    if request.verbose:
        response.info.update(_info(config))
    return response


def _conditions() -> list[api_pb2.RuntimeCondition]:
    return [
        api_pb2.RuntimeCondition(type=RUNTIME_READY, status=True),
        api_pb2.RuntimeCondition(
            type=NETWORK_READY,
            status=False,
            reason=NETWORK_NOT_READY_REASON,
            message=NETWORK_NOT_READY_MESSAGE,
        ),
    ]


def _info(config: Config) -> dict[str, str]:
    # Values are JSON documents, as containerd's are. Only paths and names:
    # registry credentials stay out of anything sent over the socket.
    summary = {
        "root": str(config.root),
        "state": str(config.state),
        "address": str(config.socket),
        "snapshotter": config.image.snapshotter,
        "registryConfigPath": str(config.registry.config_path),
    }
    return {
        "config": json.dumps(summary),
        "lastCNILoadStatus": json.dumps(NETWORK_NOT_READY_MESSAGE),
        "python": json.dumps(platform.python_version()),
    }
