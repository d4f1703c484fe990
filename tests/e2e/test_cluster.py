"""A one-node cluster — etcd, kube-apiserver and kubelet on crishim — driven with kubectl.

Pods carry nodeName (there is no scheduler). Each test deletes what it created; the node itself is checked
for leftovers when the session's cluster goes (tests/support/kube_node.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import phase_failed
from tests.support.images import PushedImage
from tests.support.kube_manifests import TICKER, container, pod
from tests.support.kube_node import KubeNode
from tests.support.procs import wait_until

BUSYBOX = "oci"


@pytest.fixture
def objects(cluster: KubeNode, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """kubectl object names ("pod/x", "configmap/y") a test created; deleted afterwards."""
    created: list[str] = []
    yield created
    if created:
        cluster.kubectl.run("delete", "--ignore-not-found", "--wait=true", "--timeout=60s", *created)
    if phase_failed(request):
        print(f"\n--- kubelet log tail ---\n{cluster.kubelet.log_tail(40)}")
        assert cluster.control_plane is not None
        print(cluster.control_plane.log_tails())


def _create(cluster: KubeNode, objects: list[str], manifest: dict[str, Any]) -> str:
    cluster.kubectl.apply(manifest)
    name = f"{manifest['kind'].lower()}/{manifest['metadata']['name']}"
    objects.append(name)
    return str(manifest["metadata"]["name"])


def _pod(cluster: KubeNode, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl.run("get", "pod", name, "-o", "json", "--ignore-not-found")
    return cluster.kubectl.decode(proc.stdout) if proc.stdout.strip() else None


def _wait_pod(cluster: KubeNode, name: str, what: str, check: Any, timeout: float = 90) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        nonlocal found
        found = _pod(cluster, name) or {}
        return bool(found) and bool(check(found))

    wait_until(done, timeout=timeout, what=f"pod {name}: {what}", interval=0.5)
    return found


def _ready(found: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in found.get("status", {}).get("conditions", [])}
    return found["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def _container_status(found: dict[str, Any], name: str) -> dict[str, Any]:
    for status in found.get("status", {}).get("containerStatuses", []):
        if status["name"] == name:
            return dict(status)
    return {}


def test_node_registers_ready_with_crishim_as_its_runtime(cluster: KubeNode) -> None:
    lines = dict(line.split(":", 1) for line in cluster.crishim.crictl("version").stdout.splitlines() if ":" in line)
    version = lines["RuntimeVersion"].strip()

    def ready() -> dict[str, Any] | None:
        proc = cluster.kubectl.run("get", "node", cluster.name, "-o", "json", "--ignore-not-found")
        if not proc.stdout.strip():
            return None
        node: dict[str, Any] = cluster.kubectl.decode(proc.stdout)
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        return node if conditions.get("Ready") == "True" else None

    node = cluster.kubelet.wait_for("the node Ready", ready, 90)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == f"crishim://{version}"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == cluster.ip


def test_pod_runs_ready_and_logs(cluster: KubeNode, test_images: dict[str, PushedImage],
                                 objects: list[str]) -> None:
    ticker = container("ticker", test_images[BUSYBOX].ref, TICKER,
                       readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    name = _create(cluster, objects, pod("ticker", [ticker], node_name=cluster.name))
    found = _wait_pod(cluster, name, "Running and Ready", _ready)
    assert found["status"]["hostIP"] == cluster.ip
    assert found["status"]["podIP"] in cluster.network.allocations()
    wait_until(lambda: "tick 2" in cluster.kubectl.run("logs", name).stdout, timeout=30, what="tick 2 in the log")
    assert cluster.kubectl.run("logs", name).stdout.splitlines()[:3] == ["tick 0", "tick 1", "tick 2"]


def test_logs_previous_and_an_empty_dir_that_outlives_a_restart(
        cluster: KubeNode, test_images: dict[str, PushedImage], objects: list[str]) -> None:
    # Counts its runs in the emptyDir; the first run fails, the second stays.
    script = ("n=$(cat /data/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/runs; echo run $n; "
              "if [ $n = 1 ]; then exit 1; fi; exec busybox sleep 1000")
    counter = container("counter", test_images[BUSYBOX].ref, ["sh", "-c", script],
                        volumeMounts=[{"name": "data", "mountPath": "/data"}])
    name = _create(cluster, objects, pod("counter", [counter], node_name=cluster.name,
                                         volumes=[{"name": "data", "emptyDir": {}}]))
    found = _wait_pod(cluster, name, "restarted once and running",
                      lambda p: _container_status(p, "counter").get("restartCount") == 1
                      and "running" in _container_status(p, "counter").get("state", {}))
    assert _container_status(found, "counter")["lastState"]["terminated"]["exitCode"] == 1
    assert cluster.kubectl.run("logs", "--previous", name).stdout == "run 1\n"
    assert cluster.kubectl.run("logs", name).stdout == "run 2\n"


def test_config_map_secret_downward_api_and_projected_volumes(
        cluster: KubeNode, test_images: dict[str, PushedImage], objects: list[str]) -> None:
    _create(cluster, objects, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                               "data": {"colour": "teal"}})
    _create(cluster, objects, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                               "data": {"password": base64.b64encode(b"s3cret").decode()}})
    field = {"fieldRef": {"fieldPath": "metadata.name"}}
    volumes = [
        {"name": "cm", "configMap": {"name": "settings"}},
        {"name": "secret", "secret": {"secretName": "creds"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "name", **field}]}},
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "settings", "items": [{"key": "colour", "path": "colour"}]}},
            {"secret": {"name": "creds", "items": [{"key": "password", "path": "password"}]}},
            {"downwardAPI": {"items": [{"path": "name", **field}]}},
        ]}},
    ]
    mounts = [{"name": v["name"], "mountPath": f"/v/{v['name']}", "readOnly": True} for v in volumes]
    script = ("echo cm=$(cat /v/cm/colour) secret=$(cat /v/secret/password) info=$(cat /v/info/name) "
              "all=$(cat /v/all/colour)/$(cat /v/all/password)/$(cat /v/all/name); exec busybox sleep 1000")
    reader = container("reader", test_images[BUSYBOX].ref, ["sh", "-c", script], volumeMounts=mounts)
    name = _create(cluster, objects, pod("volumes", [reader], node_name=cluster.name, volumes=volumes))
    _wait_pod(cluster, name, "Running", lambda p: p["status"].get("phase") == "Running")
    wait_until(lambda: bool(cluster.kubectl.run("logs", name).stdout), timeout=30, what="the reader's line")
    assert cluster.kubectl.run("logs", name).stdout == (
        f"cm=teal secret=s3cret info={name} all=teal/s3cret/{name}\n")


def test_deleted_pod_is_torn_down(cluster: KubeNode, test_images: dict[str, PushedImage],
                                  objects: list[str]) -> None:
    name = _create(cluster, objects, pod("doomed", [container("doomed", test_images[BUSYBOX].ref, TICKER)],
                                         node_name=cluster.name))
    found = _wait_pod(cluster, name, "Running", lambda p: p["status"].get("phase") == "Running")
    pod_ip = found["status"]["podIP"]
    (sandbox,) = cluster.crishim.crictl_json("pods", "--label", f"io.kubernetes.pod.uid={found['metadata']['uid']}")[
        "items"]
    cluster.kubectl.run("delete", "pod", name, "--wait=true", "--timeout=60s")
    assert _pod(cluster, name) is None
    wait_until(lambda: cluster.crishim.crictl_json("inspectp", sandbox["id"])["status"]["state"] == "SANDBOX_NOTREADY",
               timeout=30, what="the sandbox stopped")
    running = cluster.crishim.crictl_json("ps", "--pod", sandbox["id"])["containers"]
    assert running == []
    assert pod_ip not in cluster.network.allocations()


def _container_id(cluster: KubeNode, name: str) -> str:
    found = _pod(cluster, name) or {}
    return str(_container_status(found, name).get("containerID", ""))


def _ticks(cluster: KubeNode, name: str) -> int:
    # Right after a restart kubelet may not know the pod yet and answer 404: count that as no lines.
    proc = cluster.kubectl.run("logs", name, check=False)
    return len(proc.stdout.splitlines()) if proc.returncode == 0 else -1


def test_pods_keep_running_across_crishim_and_kubelet_restarts(
        cluster: KubeNode, test_images: dict[str, PushedImage], objects: list[str]) -> None:
    name = _create(cluster, objects, pod("steady", [container("steady", test_images[BUSYBOX].ref, TICKER)],
                                         node_name=cluster.name))
    _wait_pod(cluster, name, "Running and Ready", _ready)
    container_id = _container_id(cluster, name)
    assert container_id.startswith("crishim://")
    runtime_id = container_id.removeprefix("crishim://")
    for restart in (cluster.crishim.restart, cluster.kubelet.restart):
        ticks = _ticks(cluster, name)
        restart()
        wait_until(lambda before=ticks: _ticks(cluster, name) > before + 1, timeout=60,  # type: ignore[misc]
                   what=f"the ticker still ticking after {restart.__qualname__}")
        assert cluster.crishim.crictl_json("inspect", runtime_id)["status"]["state"] == "CONTAINER_RUNNING"

        def same_container() -> bool:
            status = cluster.kubelet.container_status(name, name) or {}
            return status.get("containerID") == container_id and status.get("restartCount") == 0 \
                and "running" in status.get("state", {})

        cluster.kubelet.wait_for(f"kubelet to report the same container after {restart.__qualname__}",
                                 same_container, 60)


def test_image_garbage_collection_frees_unused_images(
        cluster: KubeNode, test_images: dict[str, PushedImage]) -> None:
    in_use, unused = test_images[BUSYBOX].ref, test_images["user1000"].ref
    # A static pod is critical: kubelet never evicts it, so its image stays in use throughout.
    keeper = cluster.kubelet.add_static_pod(pod("gc-keeper", [container("keeper", in_use, TICKER)]))
    try:
        _wait_pod(cluster, keeper, "Running", lambda p: p["status"].get("phase") == "Running")
        cluster.crishim.crictl("pull", unused)
        image_fs = cluster.kubelet.json("/stats/summary")["node"]["runtime"]["imageFs"]  # from ImageFsInfo
        assert image_fs["capacityBytes"] > 0 and image_fs["usedBytes"] > 0
        assert unused in _tags(cluster)
        # kubelet's periodic collection runs at start (before its filesystem stats are ready, so it fails)
        # and then every 5 minutes; disk pressure makes it collect every 10 s. Any real disk is more than
        # 1 % full, so these thresholds put the node under pressure at once.
        low = {"memory.available": "1Mi", "nodefs.inodesFree": "1%"}
        cluster.kubelet.restart({"evictionHard": {**low, "nodefs.available": "99%", "imagefs.available": "99%"},
                                 "imageMinimumGCAge": "1s"})  # 0 means the 2 min default
        wait_until(lambda: unused not in _tags(cluster), timeout=90, what=f"kubelet to remove {unused}")
        assert in_use in _tags(cluster)
    finally:
        cluster.kubelet.remove_static_pod("gc-keeper")
        cluster.kubelet.restart({})
    wait_until(lambda: _pod(cluster, keeper) is None, timeout=60, what="the keeper's mirror pod to go")


def _tags(cluster: KubeNode) -> set[str]:
    return {tag for image in cluster.crishim.images() for tag in image.get("repoTags") or []}
