from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from cri import logs
from cri.api.runtime.v1 import api_pb2

ReadLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def read_lines() -> Iterator[ReadLines]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("info", stream=out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    "key",
    ["password", "auth", "identity_token", "registry_token", "registryToken", "Authorization", "x-auth-hdr"],
)
def test_secret_keys(key: str) -> None:
    assert logs.is_secret_key(key)


@pytest.mark.parametrize("key", ["author", "event", "image", "method", "unauthenticated", "tokens_left"])
def test_ordinary_keys(key: str) -> None:
    assert not logs.is_secret_key(key)


def test_json_lines_with_utc_timestamps(read_lines: ReadLines) -> None:
    logs.get_logger().info("hello", image="busybox")
    (line,) = read_lines()
    assert line["event"] == "hello"
    assert line["image"] == "busybox"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_level_filters(read_lines: ReadLines) -> None:
    log = logs.get_logger()
    log.debug("hidden")
    log.warning("shown")
    assert [line["event"] for line in read_lines()] == ["shown"]


def test_credentials_are_redacted(read_lines: ReadLines) -> None:
    request = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image="registry.example/app:1"),
        auth=api_pb2.AuthConfig(username="alice", password="hunter2", identity_token="tok-123"),
    )
    logs.get_logger().info(
        "pull",
        password="hunter2",
        headers={"Authorization": "Bearer tok-123", "Accept": "*/*"},
        attempts=[{"registry_token": "tok-123"}],
        request=request,
    )
    (line,) = read_lines()
    text = json.dumps(line)
    assert "hunter2" not in text
    assert "tok-123" not in text
    assert line["password"] == logs.REDACTED
    assert line["headers"] == {"Authorization": logs.REDACTED, "Accept": "*/*"}
    assert "registry.example/app:1" in line["request"]
    # The caller's message is left as it was.
    assert request.auth.password == "hunter2"


def test_stdlib_records_use_the_same_pipeline(read_lines: ReadLines) -> None:
    logging.getLogger("grpc._server").error("boom %s", "here")
    logging.getLogger("httpx").info("HTTP Request: GET https://registry.example/v2/")
    (line,) = read_lines()
    assert line["event"] == "boom here"
    assert line["logger"] == "grpc._server"
    assert line["level"] == "error"


def test_exceptions_are_rendered(read_lines: ReadLines) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        logs.get_logger().exception("failed")
    (line,) = read_lines()
    assert "ValueError: bad" in line["exception"]
