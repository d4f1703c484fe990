from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog

from cri import logs
from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from cri.instrument import Interceptor, _level
from cri.metrics import Metrics
from errdefs import NotFound, Unauthenticated

VERSION = "/runtime.v1.RuntimeService/Version"
STATUS = "/runtime.v1.RuntimeService/Status"
EVENTS = "/runtime.v1.RuntimeService/GetContainerEvents"
PULL = "/runtime.v1.ImageService/PullImage"


class Runtime(api_pb2_grpc.RuntimeServiceServicer):
    def Version(self, request: Any, context: Any) -> Any:
        if request.version == "missing":
            raise NotFound("container abc not found")
        if request.version == "bug":
            raise ValueError("private detail")
        if request.version == "abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "go away")
        structlog.get_logger().info("inside handler")
        return api_pb2.VersionResponse(runtime_name="test")

    def Status(self, request: Any, context: Any) -> Any:
        # A handler may also set the status without raising.
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details("slow down")
        return api_pb2.StatusResponse()

    def GetContainerEvents(self, request: Any, context: Any) -> Iterator[Any]:
        if ("mode", "endless") in context.invocation_metadata():
            while True:
                yield api_pb2.ContainerEventResponse(container_id="x")
                time.sleep(0.01)
        yield api_pb2.ContainerEventResponse(container_id="a")
        yield api_pb2.ContainerEventResponse(container_id="b")
        raise NotFound("event source gone")


class Images(api_pb2_grpc.ImageServiceServicer):
    def PullImage(self, request: Any, context: Any) -> Any:
        structlog.get_logger().info("pulling", request=request)
        raise Unauthenticated(f"registry refused credentials for {request.image.image}")


@dataclass
class Served:
    runtime: Any
    images: Any
    channel: Any
    metrics: Metrics
    lines: Callable[[], list[dict[str, Any]]]

    def count(self, method: str, code: str) -> float | None:
        labels = {"method": method, "code": code}
        return self.metrics.registry.get_sample_value("crishim_grpc_requests_total", labels)

    def rpc_lines(self, method: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == "rpc" and line["method"] == method]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("debug", stream=out)
    metrics = Metrics()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[Interceptor(metrics)])
    # The generated functions carry no annotations.
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(Runtime(), server)  # type: ignore[no-untyped-call]
    api_pb2_grpc.add_ImageServiceServicer_to_server(Images(), server)  # type: ignore[no-untyped-call]
    address = f"unix://{tmp_path}/test.sock"
    server.add_insecure_port(address)
    server.start()
    channel = grpc.insecure_channel(address)
    yield Served(
        runtime=api_pb2_grpc.RuntimeServiceStub(channel),  # type: ignore[no-untyped-call]
        images=api_pb2_grpc.ImageServiceStub(channel),  # type: ignore[no-untyped-call]
        channel=channel,
        metrics=metrics,
        lines=lambda: [json.loads(line) for line in out.getvalue().splitlines()],
    )
    channel.close()
    server.stop(None).wait()
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_success_is_logged_and_counted(served: Served) -> None:
    assert served.runtime.Version(api_pb2.VersionRequest()).runtime_name == "test"
    (line,) = served.rpc_lines(VERSION)
    assert line["code"] == "OK"
    assert isinstance(line["duration_ms"], float)
    assert "error" not in line
    assert served.count(VERSION, "OK") == 1
    labels = {"method": VERSION, "code": "OK"}
    registry = served.metrics.registry
    assert registry.get_sample_value("crishim_grpc_request_duration_seconds_count", labels) == 1


def test_handler_lines_carry_the_request_context(served: Served) -> None:
    served.runtime.Version(api_pb2.VersionRequest())
    served.runtime.Version(api_pb2.VersionRequest())
    inside = [line for line in served.lines() if line["event"] == "inside handler"]
    rpcs = served.rpc_lines(VERSION)
    assert [line["method"] for line in inside] == [VERSION, VERSION]
    assert [line["rpc_id"] for line in inside] == [line["rpc_id"] for line in rpcs]
    assert inside[0]["rpc_id"] != inside[1]["rpc_id"]


def test_errdefs_error_becomes_its_status(served: Served) -> None:
    error = rpc_error(lambda: served.runtime.Version(api_pb2.VersionRequest(version="missing")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "container abc not found"
    (line,) = served.rpc_lines(VERSION)
    assert (line["code"], line["error"]) == ("NOT_FOUND", "container abc not found")
    assert served.count(VERSION, "NOT_FOUND") == 1


def test_unexpected_exception_is_internal_and_logged_with_traceback(served: Served) -> None:
    error = rpc_error(lambda: served.runtime.Version(api_pb2.VersionRequest(version="bug")))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "private detail" not in error.details()
    (line,) = served.rpc_lines(VERSION)
    assert (line["code"], line["error"]) == ("INTERNAL", "internal error")
    assert line["level"] == "error"
    assert "ValueError: private detail" in line["exception"]


def test_abort_by_the_handler_is_kept(served: Served) -> None:
    error = rpc_error(lambda: served.runtime.Version(api_pb2.VersionRequest(version="abort")))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "go away"
    assert served.count(VERSION, "PERMISSION_DENIED") == 1


def test_status_set_without_raising_is_recorded(served: Served) -> None:
    error = rpc_error(lambda: served.runtime.Status(api_pb2.StatusRequest()))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    (line,) = served.rpc_lines(STATUS)
    assert (line["code"], line["error"]) == ("RESOURCE_EXHAUSTED", "slow down")


def test_unimplemented_passes_through(served: Served) -> None:
    error = rpc_error(lambda: served.runtime.ListContainers(api_pb2.ListContainersRequest()))
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    method = "/runtime.v1.RuntimeService/ListContainers"
    assert served.rpc_lines(method)[0]["code"] == "UNIMPLEMENTED"
    assert served.count(method, "UNIMPLEMENTED") == 1


def test_unknown_method_is_unimplemented(served: Served) -> None:
    call = served.channel.unary_unary("/containerd.services.version.v1.Version/Version")
    error = rpc_error(lambda: call(b""))
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    (line,) = served.rpc_lines("/containerd.services.version.v1.Version/Version")
    assert line["code"] == "UNIMPLEMENTED"


def test_server_streaming(served: Served) -> None:
    responses = served.runtime.GetContainerEvents(api_pb2.GetEventsRequest())
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for response in responses:
            received.append(response.container_id)
    assert received == ["a", "b"]
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    (line,) = served.rpc_lines(EVENTS)
    assert (line["code"], line["error"]) == ("NOT_FOUND", "event source gone")
    assert served.count(EVENTS, "NOT_FOUND") == 1


def test_credentials_never_reach_the_log(served: Served) -> None:
    request = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image="registry.example/app:1"),
        auth=api_pb2.AuthConfig(username="alice", password="hunter2", auth="YWxpY2U6aHVudGVyMg=="),
    )
    error = rpc_error(lambda: served.images.PullImage(request))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    (line,) = served.rpc_lines(PULL)
    assert line["error"] == "registry refused credentials for registry.example/app:1"
    text = json.dumps(served.lines())
    assert "hunter2" not in text
    assert "YWxpY2U6aHVudGVyMg==" not in text


def test_stream_abandoned_by_the_client_is_cancelled(served: Served) -> None:
    responses = served.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), metadata=[("mode", "endless")])
    assert next(responses).container_id == "x"
    responses.cancel()
    deadline = time.monotonic() + 5
    while not served.rpc_lines(EVENTS) and time.monotonic() < deadline:
        time.sleep(0.02)
    (line,) = served.rpc_lines(EVENTS)
    assert line["code"] == "CANCELLED"
    assert served.count(EVENTS, "CANCELLED") == 1


def test_not_found_is_routine_only_for_queries() -> None:
    assert _level("/runtime.v1.RuntimeService/ContainerStatus", grpc.StatusCode.NOT_FOUND) == logging.DEBUG
    assert _level("/runtime.v1.ImageService/PullImage", grpc.StatusCode.NOT_FOUND) == logging.WARNING
    assert _level("/runtime.v1.RuntimeService/CreateContainer", grpc.StatusCode.NOT_FOUND) == logging.WARNING


def test_list_streams_are_polled_reads_as_their_lists_are() -> None:
    for method in ("StreamPodSandboxMetrics", "StreamContainers", "ListPodSandboxMetrics"):
        assert _level(f"/runtime.v1.RuntimeService/{method}", grpc.StatusCode.OK) == logging.DEBUG
    assert _level("/runtime.v1.ImageService/StreamImages", grpc.StatusCode.CANCELLED) == logging.DEBUG
    assert _level(EVENTS, grpc.StatusCode.OK) == logging.INFO
