"""Prometheus metrics, kept in a registry of their own and served at /metrics.

The daemon makes one ``Metrics`` and hands it to whatever records something:
the RPC interceptor calls ``observe_rpc``; the image service wraps each pull in
``with metrics.pull():`` and reports fetched bytes with ``add_pull_bytes``.
A private registry (not prometheus_client's global one) lets tests build as
many daemons as they like in one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cri.config import split_host_port
from errdefs import Unavailable

__all__ = ["STREAM_KINDS", "Metrics", "MetricsServer", "start_server"]

STREAM_KINDS = ("exec", "attach", "portforward")

# Pulls range from a cached tag (well under a second) to multi-gigabyte images.
_PULL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class Metrics:
    """crishim's metrics; every name starts with ``crishim_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.grpc_requests = Counter(
            "crishim_grpc_requests_total",
            "gRPC requests handled, by full method name and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.grpc_request_duration = Histogram(
            "crishim_grpc_request_duration_seconds",
            "Time spent handling a gRPC request, by full method name and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.image_pulls = Counter(
            "crishim_image_pulls_total",
            'Image pulls by outcome ("success" or "failure").',
            ["outcome"],
            registry=self.registry,
        )
        self.image_pull_bytes = Counter(
            "crishim_image_pull_bytes_total",
            "Bytes fetched from registries.",
            registry=self.registry,
        )
        self.image_pull_duration = Histogram(
            "crishim_image_pull_duration_seconds",
            "Duration of successful image pulls.",
            buckets=_PULL_BUCKETS,
            registry=self.registry,
        )
        self.stream_sessions = Counter(
            "crishim_stream_sessions_total",
            'Streaming sessions by kind (exec, attach, portforward), transport (spdy, websocket) and outcome '
            '("completed", "failed": it could not run, "rejected": an unknown or used token, a bad handshake).',
            ["kind", "transport", "outcome"],
            registry=self.registry,
        )
        self.stream_sessions_active = Gauge(
            "crishim_stream_sessions_active",
            "Streaming sessions open now, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for outcome in ("success", "failure"):
            # Present from the start, so a rate() over them works before the first pull.
            self.image_pulls.labels(outcome=outcome)
        for kind in STREAM_KINDS:
            self.stream_sessions_active.labels(kind=kind)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method=method, code=code).inc()
        self.grpc_request_duration.labels(method=method, code=code).observe(seconds)

    @contextmanager
    def pull(self) -> Iterator[None]:
        """Count the pull run inside the block, and time it when it succeeds."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.image_pulls.labels(outcome="failure").inc()
            raise
        self.image_pulls.labels(outcome="success").inc()
        self.image_pull_duration.observe(time.perf_counter() - start)

    def add_pull_bytes(self, count: int) -> None:
        self.image_pull_bytes.inc(count)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format, as /metrics serves them."""
        return prometheus_client.generate_latest(self.registry)


class MetricsServer:
    """The HTTP endpoint serving one ``Metrics``; ``close()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        return self._server.server_port

    @property
    def address(self) -> str:
        host = str(self._server.server_address[0])
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_server(metrics: Metrics, address: str) -> MetricsServer:
    """Serve ``metrics`` on ``HOST:PORT`` (brackets around an IPv6 host)."""
    host, port = split_host_port(address, key="metrics_address")
    try:
        server, thread = prometheus_client.start_http_server(
            port, addr=host or "0.0.0.0", registry=metrics.registry
        )
    except OSError as exc:
        raise Unavailable(f"cannot serve metrics on {address}: {exc.strerror}") from exc
    return MetricsServer(server, thread)
