"""The RuntimeService servicer: each method delegates to the module named for its RPC."""

from __future__ import annotations

from typing import Any

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.config import Config
from cri.runtime_service import status, version


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, config: Config) -> None:
        self._config = config

    def Version(self, request: api_pb2.VersionRequest, context: Any) -> api_pb2.VersionResponse:
        return version.version(request)

    def Status(self, request: api_pb2.StatusRequest, context: Any) -> api_pb2.StatusResponse:
        return status.status(self._config, request)
