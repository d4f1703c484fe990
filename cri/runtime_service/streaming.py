"""Exec, Attach and PortForward: each checks its request and returns a URL of the streaming server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri.api.runtime.v1 import api_pb2

if TYPE_CHECKING:
    from cri.runtime_service.service import RuntimeService


def exec_(svc: RuntimeService, request: api_pb2.ExecRequest) -> api_pb2.ExecResponse:
    return api_pb2.ExecResponse(url=svc.streams.exec_url(request))


def attach(svc: RuntimeService, request: api_pb2.AttachRequest) -> api_pb2.AttachResponse:
    return api_pb2.AttachResponse(url=svc.streams.attach_url(request))


def port_forward(svc: RuntimeService, request: api_pb2.PortForwardRequest) -> api_pb2.PortForwardResponse:
    return api_pb2.PortForwardResponse(url=svc.streams.port_forward_url(request))
