from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from cri.config import Config
from cri.metrics import CONTAINER_OPERATIONS, Metrics, start_server
from cri.node import open_image_parts
from cri.scrape_metrics import BuildInfo, DiskUsage, ObjectStates, ProcessThreads
from errdefs import CrishimError, FailedPrecondition, NotFound, Unavailable
from store.digest import sha256_of


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_every_name_is_prefixed() -> None:
    names = [m.name for m in Metrics().registry.collect()]
    assert names
    # process_* as every exporter names them, so node dashboards read crishim's too.
    assert [n for n in names if not n.startswith("crishim_")] == [
        "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
        "process_cpu_seconds", "process_open_fds", "process_max_fds"]


def test_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.observe_rpc("/m", "OK", 0.01)
    assert sample(first, "crishim_grpc_requests_total", method="/m", code="OK") == 1
    assert sample(second, "crishim_grpc_requests_total", method="/m", code="OK") is None


def test_rpc_observations() -> None:
    metrics = Metrics()
    metrics.observe_rpc("/runtime.v1.RuntimeService/Version", "OK", 0.002)
    labels = {"method": "/runtime.v1.RuntimeService/Version", "code": "OK"}
    assert sample(metrics, "crishim_grpc_requests_total", **labels) == 1
    assert sample(metrics, "crishim_grpc_request_duration_seconds_count", **labels) == 1


def test_pull_outcomes() -> None:
    metrics = Metrics()
    assert sample(metrics, "crishim_image_pulls_total", outcome="failure") == 0
    with metrics.pull():
        assert sample(metrics, "crishim_image_pulls_in_progress") == 1
        metrics.add_pull_bytes("registry.example:5000", 1000)
    with pytest.raises(NotFound), metrics.pull():
        raise NotFound("no such image")
    assert sample(metrics, "crishim_image_pulls_total", outcome="success") == 1
    assert sample(metrics, "crishim_image_pulls_total", outcome="failure") == 1
    assert sample(metrics, "crishim_image_pulls_in_progress") == 0
    assert sample(metrics, "crishim_image_pull_bytes_total", registry="registry.example:5000") == 1000
    assert sample(metrics, "crishim_image_pull_duration_seconds_count") == 1


def test_serves_and_closes() -> None:
    metrics = Metrics()
    metrics.add_pull_bytes("127.0.0.1:5000", 42)
    server = start_server(metrics, "127.0.0.1:0")
    try:
        response = httpx.get(f"http://{server.address}/metrics")
        assert response.status_code == 200
        assert 'crishim_image_pull_bytes_total{registry="127.0.0.1:5000"} 42.0' in response.text
    finally:
        server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Unavailable, match="cannot serve metrics"):
            start_server(Metrics(), f"127.0.0.1:{taken.getsockname()[1]}")


def test_operations_count_outcomes_and_time_successes() -> None:
    metrics = Metrics()
    for operation in CONTAINER_OPERATIONS:
        assert sample(metrics, "crishim_container_operations_total", operation=operation, outcome="failure") == 0
    with metrics.containers.time("create"):
        pass
    with pytest.raises(FailedPrecondition), metrics.containers.time("create"):
        raise FailedPrecondition("pod sandbox is not ready")
    assert sample(metrics, "crishim_container_operations_total", operation="create", outcome="success") == 1
    assert sample(metrics, "crishim_container_operations_total", operation="create", outcome="failure") == 1
    assert sample(metrics, "crishim_container_operation_duration_seconds_count", operation="create") == 1
    assert sample(metrics, "crishim_sandbox_operations_total", operation="run", outcome="success") == 0


def test_gc_runs_and_what_they_free() -> None:
    metrics = Metrics()
    assert sample(metrics, "crishim_gc_last_success_timestamp_seconds") == 0
    with metrics.gc():
        metrics.observe_gc_freed(2, 3000, {"overlayfs": 1, "native": 0})
    with pytest.raises(OSError), metrics.gc():
        raise OSError("disk on fire")
    assert sample(metrics, "crishim_gc_runs_total", outcome="success") == 1
    assert sample(metrics, "crishim_gc_runs_total", outcome="failure") == 1
    assert sample(metrics, "crishim_gc_duration_seconds_count") == 2
    assert sample(metrics, "crishim_gc_freed_bytes_total") == 3000
    assert sample(metrics, "crishim_gc_freed_blobs_total") == 2
    assert sample(metrics, "crishim_gc_freed_snapshots_total", snapshotter="overlayfs") == 1
    assert sample(metrics, "crishim_gc_freed_snapshots_total", snapshotter="native") == 0
    assert (sample(metrics, "crishim_gc_last_success_timestamp_seconds") or 0) > 0


def test_process_metrics() -> None:
    metrics = Metrics()
    assert (sample(metrics, "process_resident_memory_bytes") or 0) > 0
    assert (sample(metrics, "process_open_fds") or 0) > 0


def test_image_collections_are_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    with ExitStack() as stack:
        parts = open_image_parts(Config(root=tmp_path / "root", state=tmp_path / "state"), metrics, stack)
        orphan = b"a blob no image refers to" * 100
        with parts.content.writer("orphan", sha256_of(orphan), len(orphan)) as writer:
            writer.write(orphan)
            writer.commit()
        parts.gc.collect()
        assert sample(metrics, "crishim_gc_runs_total", outcome="success") == 1
        assert sample(metrics, "crishim_gc_freed_blobs_total") == 1
        assert sample(metrics, "crishim_gc_freed_bytes_total") == len(orphan)
        assert sample(metrics, "crishim_gc_freed_snapshots_total", snapshotter="overlayfs") == 0
    with pytest.raises(CrishimError):
        parts.gc.collect()  # its database is closed
    assert sample(metrics, "crishim_gc_runs_total", outcome="failure") == 1
    assert sample(metrics, "crishim_gc_duration_seconds_count") == 2


# Labels whose values grow with the workload: one series per pod, container or image would swamp Prometheus.
PER_OBJECT_LABELS = {"container", "container_id", "pod", "pod_id", "sandbox", "sandbox_id", "image", "image_id",
                     "id", "name", "namespace", "ref", "digest"}


def test_no_family_is_labelled_per_object() -> None:
    scrape_time = [ObjectStates(list, list), DiskUsage(Path("/"), lambda: (0, 0), {}), BuildInfo("1", "abc"),
                   ProcessThreads()]
    families = [*Metrics().registry.collect(), *(f for c in scrape_time for f in c.describe())]
    labels = {label for family in families for sample in family.samples for label in sample.labels}
    labels |= {label for family in families for label in getattr(family, "_labelnames", ())}
    assert labels
    assert not labels & PER_OBJECT_LABELS
