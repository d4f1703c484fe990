"""Stats as kubelet's PodAndContainerStatsFromCRI path reads them: a container's CPU rate and available memory,
a pod's CPU, memory (from its own cgroup when it has one) and network traffic (from its network namespace),
and the same through ListPodSandboxMetrics under the names ListMetricDescriptors announces.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri.api.runtime.v1 import api_pb2
from tests.integration.test_pods import _wait_for_listener
from tests.support.cni_network import http_get
from tests.support.containerd_pods import OracleCri
from tests.support.cri_env import CriEnv

BUSY = "while true; do :; done"  # one core's worth of CPU
SERVER = ("mkdir /www && busybox dd if=/dev/zero of=/www/blob bs=1024 count=512 2>/dev/null && "
          "exec busybox httpd -f -p 8080 -h /www")
BLOB = 512 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


def test_a_container_reports_its_cpu_rate_and_available_memory(cri: CriEnv) -> None:
    pod_id = cri.runp()
    limit = 64 << 20
    container_id = cri.run(pod_id, cri.container("busy", command=["sh", "-c", BUSY],
                                                 resources={"memory_limit_in_bytes": limit}))
    first = _container_stats(cri, container_id)
    time.sleep(1)
    second = _container_stats(cri, container_id)
    assert first.cpu.usage_nano_cores.value == 0  # no sample before it: no rate yet, as containerd
    # The rate between the two samples: the loop keeps about one core busy (the machine has others' work too).
    window = second.cpu.timestamp - first.cpu.timestamp
    used = second.cpu.usage_core_nano_seconds.value - first.cpu.usage_core_nano_seconds.value
    assert second.cpu.usage_nano_cores.value == int(used / window * 1e9)
    assert 0.1e9 < second.cpu.usage_nano_cores.value < 2.5e9, second.cpu.usage_nano_cores.value
    memory = second.memory
    assert 0 < memory.working_set_bytes.value < limit
    assert memory.available_bytes.value == limit - memory.working_set_bytes.value
    # crictl shows both to a person.
    (shown,) = cri.json("stats", container_id)["stats"]
    assert int(shown["memory"]["availableBytes"]["value"]) > 0 and "usageNanoCores" in shown["cpu"]
    # Without a limit nothing is "available" (containerd's rule, which kubelet expects).
    free = cri.run(pod_id, cri.container("free"))
    assert _container_stats(cri, free).memory.available_bytes.value == 0


def test_pod_network_stats_count_the_pods_traffic(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("httpd", command=["sh", "-c", SERVER]))
    pod_ip = cri.pod_ip(pod_id)
    _wait_for_listener(pod_ip, 8080)
    before = _pod_stats(cri, pod_id).linux.network.default_interface
    for _ in range(3):
        assert len(http_get(pod_ip, 8080, path="/blob")) > BLOB
    network = _pod_stats(cri, pod_id).linux.network
    after = network.default_interface
    assert network.timestamp > 0 and after.name == "eth0"
    assert after.tx_bytes.value - before.tx_bytes.value >= 3 * BLOB
    assert after.rx_bytes.value > before.rx_bytes.value
    assert [i.name for i in network.interfaces] == []  # the loopback is never counted
    # The counters are the namespace's own, as the container sees them.
    inside = _net_dev(cri.exec(container_id, "cat", "/proc/net/dev").stdout)["eth0"]
    assert after.tx_bytes.value <= inside[1] < after.tx_bytes.value + BLOB
    (shown,) = cri.json("statsp", pod_id)["stats"]
    assert shown["linux"]["network"]["defaultInterface"]["name"] == "eth0"
    # A pod with no process in its namespace is counted too (from the pinned namespace).
    empty = cri.runp()
    assert _pod_stats(cri, empty).linux.network.default_interface.name == "eth0"
    # A stopped pod has no network namespace left to count.
    cri.crictl("stopp", pod_id)
    assert not _pod_stats(cri, pod_id).linux.HasField("network")


def test_a_ready_pod_without_its_interface_reports_no_network(cri: CriEnv) -> None:
    # So is a pod while StopPodSandbox runs: its CNI DEL is done, it is not yet marked not ready. kubelet reads
    # the default interface of any network usage it gets, and crashed on one without it.
    pod_id = cri.runp()
    # Renamed rather than deleted, and named back after: the bridge plugin's DEL finds its rules by the
    # interface's address.
    with _renamed(cri.daemon.state / "netns" / pod_id, "eth0", "eth9"):
        linux = _pod_stats(cri, pod_id).linux
    assert not linux.HasField("network")
    assert linux.memory.timestamp > 0  # the rest is still there


@contextlib.contextmanager
def _renamed(netns: Path, name: str, other: str) -> Iterator[None]:
    def ip(*args: str) -> None:
        subprocess.run(["nsenter", f"--net={netns}", "--", "ip", "link", "set", *args], check=True)

    ip(name, "down")
    ip(name, "name", other)
    try:
        yield
    finally:
        ip(other, "name", name)
        ip(name, "up")


def test_a_pod_with_a_cgroup_parent_reports_its_own_cgroup(cri: CriEnv) -> None:
    with _pod_cgroup(cri, limit=256 << 20) as parent:
        config = cri.pod()
        config["linux"]["cgroup_parent"] = parent
        pod_id = cri.runp(config)
        for name in ("one", "two"):
            cri.run(pod_id, cri.container(name, command=["sh", "-c", BUSY]))
        _pod_stats(cri, pod_id)
        time.sleep(1)
        stats = _pod_stats(cri, pod_id)
        memory = stats.linux.memory
        assert memory.available_bytes.value == (256 << 20) - memory.working_set_bytes.value
        # (v1 memory usage is approximate, charged in per-CPU batches: no exact parent-versus-children sum.)
        assert memory.working_set_bytes.value > 0
        # Two busy containers: a good part of a core at least, measured on the pod's cgroup, which counts
        # every container's CPU time (read after theirs, and cpuacct is exact).
        assert stats.linux.cpu.usage_nano_cores.value > 0.2e9, stats.linux.cpu.usage_nano_cores.value
        assert stats.linux.cpu.usage_core_nano_seconds.value >= sum(
            c.cpu.usage_core_nano_seconds.value for c in stats.linux.containers)
        # Each container is a shell (the pod shares one PID namespace: no extra init of its own in the cgroup).
        processes = int((CGROUP_ROOT / "pids" / parent.lstrip("/") / "pids.current").read_text())
        assert stats.linux.process.process_count.value == processes >= 2


def test_pod_stats_have_the_fields_containerd_gives(cri: CriEnv, containerd_pods: OracleCri) -> None:
    limit = 256 << 20
    seen = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        with _pod_cgroup(runtime, limit) as parent:
            config = runtime.pod()
            config["linux"]["cgroup_parent"] = parent
            pod_id = runtime.runp(config)
            runtime.run(pod_id, runtime.container("one"))
            (stats,) = runtime.json("statsp", pod_id)["stats"]
            linux = stats["linux"]
            memory, network = linux["memory"], linux["network"]
            assert int(memory["availableBytes"]["value"]) == limit - int(memory["workingSetBytes"]["value"]), name
            seen[name] = ({key: sorted(value) if isinstance(value, dict) else len(value)
                           for key, value in linux.items()},
                          network["defaultInterface"]["name"], network["interfaces"])
    assert seen["crishim"] == seen["containerd"]


def test_pod_metrics_use_the_announced_descriptors(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("httpd", command=["sh", "-c", SERVER]))
    stopped = cri.runp()
    cri.crictl("stopp", stopped)
    _wait_for_listener(cri.pod_ip(pod_id), 8080)
    http_get(cri.pod_ip(pod_id), 8080, path="/blob")
    descriptors = {d.name: list(d.label_keys)
                   for d in cri.rpc("ListMetricDescriptors", api_pb2.ListMetricDescriptorsRequest()).descriptors}
    (pod,) = cri.rpc("ListPodSandboxMetrics", api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
    assert pod.pod_sandbox_id == pod_id  # the stopped pod has no cgroups or namespace left to measure
    metrics = [*pod.metrics, *(m for c in pod.container_metrics for m in c.metrics)]
    for metric in metrics:
        assert len(metric.label_values) == len(descriptors[metric.name]), metric
    labelled = {(m.name, *m.label_values): m.value.value for m in metrics}
    tx = next(v for k, v in labelled.items()
              if k[0] == "container_network_transmit_bytes_total" and k[1] == "POD" and k[-1] == "eth0")
    assert tx >= BLOB
    (container,) = pod.container_metrics
    assert container.container_id == container_id
    working_set = {m.name: m for m in container.metrics}["container_memory_working_set_bytes"]
    labels = dict(zip(descriptors[working_set.name], working_set.label_values, strict=True))
    meta = cri.inspectp(pod_id)["status"]["metadata"]
    assert (labels["container"], labels["image"], labels["pod"], labels["namespace"]) == (
        "httpd", cri.image.ref, meta["name"], meta["namespace"])
    assert working_set.value.value > 0
    shown = cri.crictl("metricdescs").stdout
    assert "container_network_receive_bytes_total" in shown


def _container_stats(cri: CriEnv, container_id: str) -> Any:
    return cri.rpc("ContainerStats", api_pb2.ContainerStatsRequest(container_id=container_id)).stats


def _pod_stats(cri: CriEnv, pod_id: str) -> Any:
    return cri.rpc("PodSandboxStats", api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats


def _net_dev(text: str) -> dict[str, tuple[int, int]]:
    rows = {}
    for line in text.splitlines()[2:]:
        name, colon, counters = line.partition(":")
        if colon:
            fields = counters.split()
            rows[name.strip()] = (int(fields[0]), int(fields[8]))
    return rows


@contextlib.contextmanager
def _pod_cgroup(runtime: CriEnv | OracleCri, limit: int) -> Iterator[str]:
    """A pod cgroup with a memory limit, as kubelet makes one; removed, with the pods in it, afterwards."""
    name = f"crishim-test-{secrets.token_hex(4)}"
    memory = CGROUP_ROOT / "memory" / name
    if not (CGROUP_ROOT / "memory").is_dir():
        pytest.skip("no cgroup v1 memory hierarchy here to give a pod a limit in")
    memory.mkdir()
    try:
        (memory / "memory.limit_in_bytes").write_text(str(limit))
        yield f"/{name}"
    finally:
        runtime.crictl("rmp", "-af")  # the containers' cgroups go with them; then the pod's can
        for hierarchy in CGROUP_ROOT.iterdir():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                (hierarchy / name).rmdir()
