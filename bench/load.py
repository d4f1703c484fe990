"""Load: many CRI clients at once for a while, then what the daemon looks like after they are gone.

    .venv/bin/python -m bench.load [--clients 50] [--seconds 300]

Each client loops over a mix of what kubelet does: list and status calls, a pull of an image already
present, and a container's whole life (create, start, stop, remove) in one shared host-network pod.
Reported: answers by status code (and which were unexpected), p50/p99 per method, the daemon's RSS,
threads and open fds before the load and after teardown, and what ``crishim check`` finds afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bench.container_start import POD, push_images
from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.daemon import Crishim, launch, python_executable
from tests.support.registry import start_registry

# Codes a healthy daemon may answer under this mix: none. Any other code is counted as unexpected.
EXPECTED_CODES = {"OK"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crishim-load-", dir="/var/tmp") as tmp:
        print(json.dumps(run_all(Path(tmp), args.clients, args.seconds), indent=2))


def run_all(work: Path, clients: int, seconds: float) -> dict[str, Any]:
    registry = start_registry(work / "registry")
    try:
        image, _ = push_images(work, registry.host)
        daemon = launch(work / "crishim", [registry.host])
        try:
            return _load(daemon, image, clients, seconds)
        finally:
            daemon.cleanup()
    finally:
        registry.stop()


def _load(daemon: Crishim, image: str, clients: int, seconds: float) -> dict[str, Any]:
    daemon.crictl("pull", image)
    pod_file = daemon.workdir / "pod.json"
    pod_file.write_text(json.dumps(POD))
    pod_id = daemon.crictl("runp", str(pod_file)).stdout.strip()
    time.sleep(1)
    before = _process(daemon)
    results: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(f"unix://{daemon.socket}") as channel:
        workers = [threading.Thread(target=_client, args=(channel, pod_id, image, deadline, i, results, lock))
                   for i in range(clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    daemon.crictl("stopp", pod_id)
    daemon.crictl("rmp", pod_id)
    time.sleep(3)  # background collection and exit handling settle
    after = _process(daemon)
    check = subprocess.run([str(python_executable()), "-m", "cri", "check", "--root", str(daemon.root),
                            "--state", str(daemon.state)], capture_output=True, text=True)
    return {
        "clients": clients, "seconds": seconds, "calls": len(results),
        "codes": dict(Counter(code for _, code, _ in results)),
        "unexpected": dict(Counter(f"{m} {c}" for m, c, _ in results if c not in EXPECTED_CODES)),
        "latency_ms": _latencies(results),
        "process_before": before, "process_after": after,
        "leftovers": {"containers": daemon.crictl("ps", "-aq").stdout.split(),
                      "pods": daemon.crictl("pods", "-q").stdout.split(),
                      "check": check.stdout.splitlines()},
    }


def _client(channel: grpc.Channel, pod_id: str, image: str, deadline: float, index: int,
            results: list[tuple[str, str, float]], lock: threading.Lock) -> None:
    runtime, images = api_pb2_grpc.RuntimeServiceStub(channel), api_pb2_grpc.ImageServiceStub(channel)
    rng = random.Random(index)
    spec = api_pb2.ImageSpec(image=image)
    reads: list[tuple[str, Callable[..., Any], Any]] = [
        ("ListImages", images.ListImages, api_pb2.ListImagesRequest()),
        ("ImageStatus", images.ImageStatus, api_pb2.ImageStatusRequest(image=spec)),
        ("ListContainers", runtime.ListContainers, api_pb2.ListContainersRequest()),
        ("ListPodSandbox", runtime.ListPodSandbox, api_pb2.ListPodSandboxRequest()),
        ("PodSandboxStatus", runtime.PodSandboxStatus, api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)),
        ("PullImage", images.PullImage, api_pb2.PullImageRequest(image=spec)),
    ]
    record = _Recorder(results, lock)
    serial = 0
    while time.monotonic() < deadline:
        if rng.random() < 0.8:
            record(*rng.choice(reads))
        else:
            serial += 1
            _one_container(runtime, record, pod_id, spec, f"load-{index}-{serial}")


def _one_container(runtime: Any, record: _Recorder, pod_id: str, spec: api_pb2.ImageSpec, name: str) -> None:
    sandbox = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(
        name=POD["metadata"]["name"], namespace=POD["metadata"]["namespace"],  # type: ignore[index]
        uid=POD["metadata"]["uid"]))  # type: ignore[index]
    sandbox.linux.security_context.namespace_options.network = api_pb2.NamespaceMode.NODE
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=name), image=spec,
                                     command=["/bin/busybox", "sleep", "3600"])
    created = record("CreateContainer", runtime.CreateContainer, api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox))
    if created is None:
        return
    cid = created.container_id
    record("StartContainer", runtime.StartContainer, api_pb2.StartContainerRequest(container_id=cid))
    record("ContainerStatus", runtime.ContainerStatus, api_pb2.ContainerStatusRequest(container_id=cid))
    record("StopContainer", runtime.StopContainer, api_pb2.StopContainerRequest(container_id=cid, timeout=2))
    record("RemoveContainer", runtime.RemoveContainer, api_pb2.RemoveContainerRequest(container_id=cid))


class _Recorder:
    """Calls one RPC and keeps (method, status code, seconds)."""

    def __init__(self, results: list[tuple[str, str, float]], lock: threading.Lock) -> None:
        self._results = results
        self._lock = lock

    def __call__(self, name: str, method: Callable[..., Any], request: Any) -> Any:
        start = time.perf_counter()
        try:
            answer, code = method(request, timeout=60), "OK"
        except grpc.RpcError as exc:
            answer, code = None, exc.code().name
        with self._lock:
            self._results.append((name, code, time.perf_counter() - start))
        return answer


def _latencies(results: list[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    by_method: dict[str, list[float]] = defaultdict(list)
    for name, _, seconds in results:
        by_method[name].append(seconds * 1000)
    out = {}
    for name, samples in sorted(by_method.items()):
        samples.sort()
        out[name] = {"n": len(samples), "p50": round(statistics.median(samples), 1),
                     "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1)}
    return out


def _process(daemon: Crishim) -> dict[str, int]:
    assert daemon.process is not None
    proc = Path(f"/proc/{daemon.process.pid}")
    fields = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
    return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
            "fds": len(list((proc / "fd").iterdir()))}


if __name__ == "__main__":
    main()
