"""A standalone kubelet (no API server) runs static pods through crishim.

One kubelet serves the module; each test writes its manifests into kubelet's staticPodPath and removes them
at the end. What the tests read comes from the real consumers: kubelet's /pods and /containerLogs, crictl,
and HTTP to the pod's IP on the test's own bridge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import phase_failed
from tests.support.cni_network import http_get
from tests.support.images import PushedImage
from tests.support.kube_build import KubeBinaries
from tests.support.kube_host import KERNEL_TUNABLES
from tests.support.kube_manifests import TICKER, container, pod
from tests.support.kube_node import KubeNode, kube_node
from tests.support.registry import Registry
from tests.support.seed_image import INDEX_HTML, SeedImage

# What kubelet writes (container_manager_linux.go: setupKernelTunables).
KUBELET_TUNABLES = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                    "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                    "kernel/keys/root_maxbytes": "25000000"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: Registry, test_images: dict[str, PushedImage],
         kube_binaries: KubeBinaries) -> Iterator[KubeNode]:
    with kube_node(tmp_path_factory.mktemp("kubelet"), registry, test_images["oci"], kube_binaries) as node:
        yield node


@pytest.fixture
def static_pods(node: KubeNode, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Manifest names a test added; removed afterwards, and kubelet's log tail printed if the test failed."""
    added: list[str] = []
    yield added
    for name in added:
        if (node.kubelet.manifests / f"{name}.json").exists():
            node.kubelet.remove_static_pod(name)
    if phase_failed(request):
        print(f"\n--- kubelet log tail ({node.kubelet.log_path}) ---\n{node.kubelet.log_tail()}")


def _run(node: KubeNode, static_pods: list[str], manifest: dict[str, Any]) -> str:
    static_pods.append(manifest["metadata"]["name"])
    return node.kubelet.add_static_pod(manifest)


def _running(node: KubeNode, name: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = node.kubelet.pod(name)
        return found if found and found["status"].get("phase") == "Running" else None

    result: dict[str, Any] = node.kubelet.wait_for(f"pod {name} Running in kubelet's /pods", check, timeout)
    return result


def _sandbox(node: KubeNode, pod_name: str) -> dict[str, Any]:
    items = node.crishim.crictl_json("pods", "--name", pod_name)["items"]
    assert len(items) >= 1, f"crishim has no sandbox for {pod_name}"
    return dict(items[0])


def _container_id(node: KubeNode, pod_name: str, container_name: str) -> str:
    sandbox = _sandbox(node, pod_name)
    listed = node.crishim.crictl_json("ps", "-a", "--pod", sandbox["id"], "--name", container_name)
    return str(listed["containers"][0]["id"])


def test_kubelet_tunables_land_in_its_own_namespace(node: KubeNode) -> None:
    # kubelet really wrote its values (into the shadow files), and the host kept its own. It answers /healthz
    # before its container manager sets them, so wait for them.
    node.kubelet.wait_for("kubelet to set its kernel tunables",
                          lambda: node.kubelet.shadow.written() == KUBELET_TUNABLES, 60)
    assert node.kubelet.shadow.host_now() == node.kubelet.shadow.host_values
    assert set(KUBELET_TUNABLES) == set(KERNEL_TUNABLES)


def test_ticker_logs_through_crictl_and_kubelet(node: KubeNode, test_images: dict[str, PushedImage],
                                                 static_pods: list[str]) -> None:
    name = _run(node, static_pods, pod("ticker", [container("ticker", test_images["oci"].ref, TICKER)]))
    _running(node, name)
    container_id = _container_id(node, name, "ticker")
    node.kubelet.wait_for("tick 2 in crictl logs",
                          lambda: "tick 2" in node.crishim.crictl("logs", container_id).stdout, 30)

    def via_kubelet() -> str | None:
        text = node.kubelet.get(f"/containerLogs/default/{name}/ticker").text
        return text if "tick 3" in text else None

    lines = node.kubelet.wait_for("tick 3 in kubelet's /containerLogs", via_kubelet, 30).splitlines()
    assert lines[:3] == ["tick 0", "tick 1", "tick 2"]


def test_seed_nginx_answers_on_its_pod_ip(node: KubeNode, seed_image: SeedImage, static_pods: list[str]) -> None:
    name = _run(node, static_pods, pod("nginx", [container("nginx", seed_image.ref, ports=[{"containerPort": 8080}])]))
    status = _running(node, name, timeout=180)["status"]
    pod_ip = status["podIP"]
    assert pod_ip in node.network.allocations()
    answer = node.kubelet.wait_for(f"nginx on {pod_ip}:8080",
                                   lambda: _try_get(pod_ip, 8080, "/"), 30)
    assert answer.startswith("HTTP/1.1 200")
    assert INDEX_HTML in answer


def _try_get(host: str, port: int, path: str) -> str | None:
    try:
        return http_get(host, port, path)
    except OSError:
        return None


def test_crashing_container_backs_off_and_its_sibling_keeps_running(
        node: KubeNode, test_images: dict[str, PushedImage], static_pods: list[str]) -> None:
    image = test_images["oci"].ref
    name = _run(node, static_pods, pod("crasher", [
        container("crasher", image, ["sh", "-c", "echo going; busybox sleep 3; exit 3"]),
        container("sibling", image, TICKER),
    ]))
    seen_backoff = False

    def crashed_twice() -> dict[str, Any] | None:
        nonlocal seen_backoff
        status = node.kubelet.container_status(name, "crasher") or {}
        if status.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            seen_backoff = True
        return status if status.get("restartCount", 0) >= 2 and seen_backoff else None

    status = node.kubelet.wait_for("the crasher restarted twice and backing off", crashed_twice, 150)
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    sibling = node.kubelet.container_status(name, "sibling")
    assert sibling is not None
    assert sibling["restartCount"] == 0
    assert "running" in sibling["state"]


def test_probes(node: KubeNode, test_images: dict[str, PushedImage], static_pods: list[str]) -> None:
    image = test_images["oci"].ref
    web = container("web", image, ["sh", "-c", "mkdir -p /www && echo ok > /www/ready.html && "
                                               "exec busybox httpd -f -p 8080 -h /www"],
                    readinessProbe={"httpGet": {"path": "/ready.html", "port": 8080}, "periodSeconds": 1},
                    livenessProbe={"httpGet": {"path": "/ready.html", "port": 8080}, "periodSeconds": 1})
    # Healthy for 4 s, then its liveness file goes: kubelet must kill and restart it.
    flaky = container("flaky", image, ["sh", "-c", "touch /tmp/alive; busybox sleep 4; rm /tmp/alive; "
                                                   "exec busybox sleep 1000"],
                      livenessProbe={"exec": {"command": ["cat", "/tmp/alive"]}, "initialDelaySeconds": 1,
                                     "periodSeconds": 1, "failureThreshold": 1})
    never_ready = container("never-ready", image, TICKER,
                            readinessProbe={"exec": {"command": ["cat", "/nonexistent"]}, "periodSeconds": 1})
    name = _run(node, static_pods, pod("probes", [web, flaky, never_ready]))
    _running(node, name)
    node.kubelet.wait_for("web ready", lambda: (node.kubelet.container_status(name, "web") or {}).get("ready"), 60)

    def flaky_restarted() -> dict[str, Any] | None:
        status = node.kubelet.container_status(name, "flaky") or {}
        return status if status.get("restartCount", 0) >= 1 else None

    restarted = node.kubelet.wait_for("flaky restarted by its liveness probe", flaky_restarted, 60)
    # sh as PID 1 ignores SIGTERM: killed after the grace period.
    assert restarted["lastState"]["terminated"]["exitCode"] == 137
    web_status = node.kubelet.container_status(name, "web")
    never = node.kubelet.container_status(name, "never-ready")
    assert web_status is not None and never is not None
    assert web_status["ready"] is True and web_status["restartCount"] == 0
    assert never["ready"] is False and "running" in never["state"]
    conditions = {c["type"]: c["status"] for c in node.kubelet.pod(name)["status"]["conditions"]}  # type: ignore[index]
    assert conditions["Ready"] == "False"  # one container is not ready


def test_removed_manifest_tears_the_pod_down(node: KubeNode, test_images: dict[str, PushedImage],
                                             static_pods: list[str]) -> None:
    name = _run(node, static_pods, pod("doomed", [container("doomed", test_images["oci"].ref, TICKER)]))
    pod_ip = _running(node, name)["status"]["podIP"]
    sandbox_id = _sandbox(node, name)["id"]
    container_id = _container_id(node, name, "doomed")
    node.kubelet.remove_static_pod("doomed")
    node.kubelet.wait_for("kubelet to forget the pod", lambda: node.kubelet.pod(name) is None, 60)

    def torn_down() -> bool:
        # From the listings, not inspect: kubelet may already have removed what it stopped.
        pods = {p["id"]: p["state"] for p in node.crishim.crictl_json("pods")["items"]}
        containers = {c["id"]: c["state"] for c in node.crishim.crictl_json("ps", "-a")["containers"]}
        return (pods.get(sandbox_id, "SANDBOX_NOTREADY") == "SANDBOX_NOTREADY"
                and containers.get(container_id, "CONTAINER_EXITED") == "CONTAINER_EXITED")

    node.kubelet.wait_for("the sandbox stopped and its container exited", torn_down, 60)
    assert pod_ip not in node.network.allocations()


def test_stats_summary_covers_every_pod(node: KubeNode, test_images: dict[str, PushedImage],
                                        static_pods: list[str]) -> None:
    web = ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec busybox httpd -f -p 8080 -h /www"]
    names = [_run(node, static_pods, pod(f"stats-{i}", [container("web", test_images["oci"].ref, web)]))
             for i in range(2)]
    for name in names:
        pod_ip = _running(node, name)["status"]["podIP"]
        node.kubelet.wait_for(f"{name} to answer", lambda ip=pod_ip: _try_get(ip, 8080, "/index.html"), 30)

    def summary_for_all() -> dict[str, dict[str, Any]] | None:
        pods = {p["podRef"]["name"]: p for p in node.kubelet.json("/stats/summary")["pods"]}
        if not all(name in pods and _complete(pods[name]) for name in names):
            return None
        return pods

    pods = node.kubelet.wait_for("stats for both pods in /stats/summary", summary_for_all, 90)
    for name in names:
        stats = pods[name]
        assert stats["cpu"]["usageCoreNanoSeconds"] > 0
        assert stats["memory"]["workingSetBytes"] > 0
        (web_stats,) = stats["containers"]
        assert web_stats["rootfs"]["usedBytes"] > 0 and web_stats["rootfs"]["capacityBytes"] > 0  # /www
        assert web_stats["logs"]["capacityBytes"] > 0
        # The HTTP exchange above went through the pod's eth0, its default interface (as containerd, the
        # only one reported).
        network = stats["network"]
        assert network["name"] == "eth0" and network["rxBytes"] > 0 and network["txBytes"] > 0


def _complete(stats: dict[str, Any]) -> bool:
    # The first samples can be empty; kubelet fills them in at its next housekeeping.
    containers = stats.get("containers") or []
    return bool(stats.get("cpu", {}).get("usageCoreNanoSeconds") and stats.get("memory", {}).get("workingSetBytes")
                and stats.get("network", {}).get("rxBytes")
                and containers and all(c.get("rootfs") and c.get("logs") for c in containers))
