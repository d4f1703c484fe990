"""StopContainer: the image's stop signal, the grace period, then SIGKILL."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2
from errdefs import NotFound

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def stop_container(svc: RuntimeService, request: api_pb2.StopContainerRequest) -> api_pb2.StopContainerResponse:
    # The CRI: "This call is idempotent, and must not return an error if the container has already
    # been stopped." kubelet retries stops for containers already removed.
    with svc.metrics.containers.time("stop"), contextlib.suppress(NotFound):
        svc.containers.stop(request.container_id, float(request.timeout))
    return api_pb2.StopContainerResponse()
