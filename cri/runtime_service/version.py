"""Version: who answers on this socket, and which CRI it speaks."""

from __future__ import annotations

import cri
from cri.api.runtime.v1 import api_pb2

RUNTIME_NAME = "crishim"
# The version of the kubelet runtime API; every CRI runtime reports "0.1.0".
KUBE_RUNTIME_API_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"


def version(request: api_pb2.VersionRequest) -> api_pb2.VersionResponse:
    return api_pb2.VersionResponse(
        version=KUBE_RUNTIME_API_VERSION,
        runtime_name=RUNTIME_NAME,
        runtime_version=cri.__version__,
        runtime_api_version=RUNTIME_API_VERSION,
    )
