"""Prometheus metrics, kept in a registry of their own and served at /metrics.

The daemon makes one ``Metrics`` and hands it to whatever records something:
the RPC interceptor calls ``observe_rpc``; the image service wraps each pull in
``with metrics.pull():`` (which counts it in ``pulls_in_progress``) and reports
fetched bytes with ``add_pull_bytes``, by registry host; per layer, the puller and
the unpacker observe ``layer_download_duration`` and ``layer_unpack_duration``; the
runtime service times pod and container operations with
``with metrics.containers.time("create"):`` (and ``sandboxes``, ``cni``); a
garbage collection reports through ``observe_gc``. What is read rather than
counted (objects by state, disk usage) is collected at scrape time by the
collectors of ``cri.scrape_metrics``, registered once the stores are open.
A private registry (not prometheus_client's global one) lets tests build as
many daemons as they like in one process.

Labels stay few and bounded: an operation, an outcome, a state, a
snapshotter; never a container, pod or image.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.registry import Collector

from cri.config import split_host_port
from errdefs import Unavailable

__all__ = ["CNI_OPERATIONS", "CONTAINER_OPERATIONS", "OUTCOMES", "SANDBOX_OPERATIONS", "STREAM_KINDS", "Metrics",
           "MetricsServer", "Operations", "start_server"]

STREAM_KINDS = ("exec", "attach", "portforward")
OUTCOMES = ("success", "failure")
SANDBOX_OPERATIONS = ("run", "stop", "remove")
CONTAINER_OPERATIONS = ("create", "start", "stop", "remove")
CNI_OPERATIONS = ("setup", "teardown")

# Pulls range from a cached tag (well under a second) to multi-gigabyte images.
_PULL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# A small layer lands in milliseconds, a large one over a slow link in minutes.
_LAYER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A create takes milliseconds; a stop may wait out a grace period of half a minute or more.
_OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A collection of an idle store takes milliseconds; one after removing many large images, minutes.
_GC_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Operations:
    """Counts of one kind of object's operations by outcome, and the latency of the successful ones.

    Successful ones only, as containerd's CRI timers: a failure's time says more about the failure
    (a timeout, a refusal) than about how long the operation takes.
    """

    def __init__(self, prefix: str, what: str, operations: Sequence[str], registry: CollectorRegistry) -> None:
        self._count = Counter(
            f"{prefix}_operations_total",
            f"{what[0].upper()}{what[1:]} operations by operation ({', '.join(operations)}) and outcome "
            "(success, failure).",
            ["operation", "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            f"{prefix}_operation_duration_seconds",
            f"Time successful {what} operations took, by operation.",
            ["operation"],
            buckets=_OPERATION_BUCKETS,
            registry=registry,
        )
        for operation in operations:
            self._duration.labels(operation=operation)
            for outcome in OUTCOMES:
                self._count.labels(operation=operation, outcome=outcome)

    @contextmanager
    def time(self, operation: str) -> Iterator[None]:
        """Count the operation run inside the block, and time it when it succeeds."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self._count.labels(operation=operation, outcome="failure").inc()
            raise
        self._count.labels(operation=operation, outcome="success").inc()
        self._duration.labels(operation=operation).observe(time.perf_counter() - start)


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
            "Bytes fetched from registries, by the registry host (mirror or upstream) that served them.",
            ["registry"],
            registry=self.registry,
        )
        self.pulls_in_progress = Gauge(
            "crishim_image_pulls_in_progress",
            "Image pulls running now (identical pulls that share one count once).",
            registry=self.registry,
        )
        self.layer_download_duration = Histogram(
            "crishim_image_layer_download_duration_seconds",
            "Time each layer's download took, from its first request to its verified blob.",
            buckets=_LAYER_BUCKETS,
            registry=self.registry,
        )
        self.layer_unpack_duration = Histogram(
            "crishim_image_layer_unpack_duration_seconds",
            "Time each layer took to decompress and apply into its snapshot (it overlaps its download).",
            buckets=_LAYER_BUCKETS,
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
        self.sandboxes = Operations("crishim_sandbox", "pod sandbox", SANDBOX_OPERATIONS, self.registry)
        self.containers = Operations("crishim_container", "container", CONTAINER_OPERATIONS, self.registry)
        self.cni = Operations("crishim_cni", "CNI network", CNI_OPERATIONS, self.registry)
        self.gc_runs = Counter(
            "crishim_gc_runs_total",
            "Garbage collections of content and snapshots, by outcome (success, failure).",
            ["outcome"],
            registry=self.registry,
        )
        self.gc_duration = Histogram(
            "crishim_gc_duration_seconds",
            "Time garbage collections took, failed ones included.",
            buckets=_GC_BUCKETS,
            registry=self.registry,
        )
        self.gc_freed_bytes = Counter(
            "crishim_gc_freed_bytes_total",
            "Bytes of content blobs garbage collection removed.",
            registry=self.registry,
        )
        self.gc_freed_blobs = Counter(
            "crishim_gc_freed_blobs_total",
            "Content blobs garbage collection removed.",
            registry=self.registry,
        )
        self.gc_freed_snapshots = Counter(
            "crishim_gc_freed_snapshots_total",
            "Snapshots garbage collection removed, by snapshotter.",
            ["snapshotter"],
            registry=self.registry,
        )
        self.gc_last_success = Gauge(
            "crishim_gc_last_success_timestamp_seconds",
            "When the last garbage collection that succeeded ended (Unix time); 0 before the first.",
            registry=self.registry,
        )
        # CPU, resident memory, open and allowed fds, start time: prometheus_client's process_* families,
        # named as every exporter names them so that node dashboards read them too.
        ProcessCollector(registry=self.registry)
        for outcome in OUTCOMES:
            # Present from the start, so a rate() over them works before the first pull or collection.
            self.image_pulls.labels(outcome=outcome)
            self.gc_runs.labels(outcome=outcome)
        for kind in STREAM_KINDS:
            self.stream_sessions_active.labels(kind=kind)

    def register(self, collector: Collector) -> None:
        """Add a scrape-time collector (its ``describe`` must not read anything)."""
        self.registry.register(collector)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method=method, code=code).inc()
        self.grpc_request_duration.labels(method=method, code=code).observe(seconds)

    @contextmanager
    def pull(self) -> Iterator[None]:
        """Count the pull run inside the block, and time it when it succeeds."""
        start = time.perf_counter()
        self.pulls_in_progress.inc()
        try:
            yield
        except BaseException:
            self.image_pulls.labels(outcome="failure").inc()
            raise
        finally:
            self.pulls_in_progress.dec()
        self.image_pulls.labels(outcome="success").inc()
        self.image_pull_duration.observe(time.perf_counter() - start)

    def add_pull_bytes(self, registry: str, count: int) -> None:
        self.image_pull_bytes.labels(registry=registry).inc(count)

    @contextmanager
    def gc(self) -> Iterator[None]:
        """Count and time the collection run inside the block."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.gc_runs.labels(outcome="failure").inc()
            raise
        finally:
            self.gc_duration.observe(time.perf_counter() - start)
        self.gc_runs.labels(outcome="success").inc()
        self.gc_last_success.set(time.time())

    def observe_gc_freed(self, blobs: int, blob_bytes: int, snapshots: dict[str, int]) -> None:
        self.gc_freed_blobs.inc(blobs)
        self.gc_freed_bytes.inc(blob_bytes)
        for snapshotter, count in snapshots.items():
            self.gc_freed_snapshots.labels(snapshotter=snapshotter).inc(count)

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
