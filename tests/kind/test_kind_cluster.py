"""A three-node kind cluster whose nodes run crishim: the nodes, the control plane on crishim, images loaded
the way kind loads them, and a Deployment behind a Service reached from another pod."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cni_network import http_get
from tests.support.kind_cluster import BUSYBOX, CLUSTER, NGINX, KindCluster
from tests.support.procs import wait_until

HELLO = "hello from nginx\n"
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080")
CONTROL_PLANE_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


CONTROL_PLANE = f"{CLUSTER}-control-plane"


def workers(cluster: KindCluster) -> list[str]:
    return [n for n in cluster.node_names() if n != CONTROL_PLANE]


def test_every_node_is_ready_and_runs_crishim(cluster: KindCluster) -> None:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == cluster.node_names()
    for node in nodes:
        version = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        assert version.startswith("crishim://"), version
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready


def test_control_plane_runs_on_crishim(cluster: KindCluster) -> None:
    node = CONTROL_PLANE
    ready = [p["metadata"]["name"] for p in cluster.crictl_json(node, "pods")["items"]
             if p["state"] == "SANDBOX_READY"]
    for component in CONTROL_PLANE_PODS:  # static pods are named <component>-<node>, kube-proxy's by its DaemonSet
        assert any(name.startswith(f"{component}-") for name in ready), (component, ready)
    containers = cluster.crictl_json(node, "ps")["containers"]
    names = {c["metadata"]["name"] for c in containers if c["state"] == "CONTAINER_RUNNING"}
    assert set(CONTROL_PLANE_PODS) <= names, names
    # The preloaded images, by the names kubeadm asked for.
    preloaded = cluster.on_node(node, "cut", "-f1", "/kind/images/index.tsv").stdout.split()
    tags = {t for image in cluster.crictl_json(node, "images")["images"] for t in image["repoTags"]}
    assert set(preloaded) <= tags, set(preloaded) - tags
    # And kubelet sees them through the API as the node's images.
    status = cluster.kubectl_json("get", "node", node)["status"]
    assert set(preloaded) <= {name for image in status["images"] for name in image["names"]}


def test_loaded_images_are_on_every_node(cluster: KindCluster, loaded_images: None) -> None:
    for node in cluster.node_names():
        tags = {t for image in cluster.crictl_json(node, "images")["images"] for t in image["repoTags"]}
        assert {NGINX, BUSYBOX} <= tags, (node, tags)


def manifests(tmp: Path) -> Path:
    web: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                        # The control plane's taint keeps the pods off it: it is no domain to spread over.
                        "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": {"app": "nginx"}}}],
                    "containers": [{
                        "name": "nginx", "image": NGINX, "imagePullPolicy": "Never",
                        "ports": [{"containerPort": 8080}],
                        "volumeMounts": [{"name": "page", "mountPath": "/var/www/html"}]}],
                    "volumes": [{"name": "page", "configMap": {"name": "nginx-page"}}]}}}}
    page = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nginx-page"},
            "data": {"index.html": HELLO}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
               "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    path = tmp / "nginx.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [page, web, service]}))
    return path


@pytest.fixture(scope="module")
def nginx(cluster: KindCluster, loaded_images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = manifests(tmp_path_factory.mktemp("nginx"))
    cluster.kubectl("apply", "-f", str(path))
    cluster.kubectl("rollout", "status", "deployment/nginx", "--timeout=300s", timeout=330)
    yield path
    cluster.kubectl("delete", "--ignore-not-found", "--wait=true", "-f", str(path), timeout=300)


def nginx_pods(cluster: KindCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-l", "app=nginx")["items"]
    return items


def test_deployment_spreads_over_the_workers(cluster: KindCluster, nginx: Path) -> None:
    pods = nginx_pods(cluster)
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} == set(workers(cluster))


def test_service_answers_from_another_pod(cluster: KindCluster, nginx: Path) -> None:
    ip = cluster.kubectl_json("get", "service", "nginx")["spec"]["clusterIP"]
    fetch = f"for i in 1 2 3 4 5 6; do wget -qO- http://{ip}/ && break; sleep 2; done"
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
              "spec": {"restartPolicy": "Never", "containers": [{
                  "name": "client", "image": BUSYBOX, "imagePullPolicy": "Never",
                  "command": ["sh", "-c", fetch]}]}}
    path = nginx.parent / "client.json"
    path.write_text(json.dumps(client))
    cluster.kubectl("apply", "-f", str(path))
    try:
        wait_until(lambda: cluster.kubectl_json("get", "pod", "client")["status"]["phase"] in ("Succeeded", "Failed"),
                   timeout=180, interval=2, what="the client pod to finish")
        assert cluster.kubectl("logs", "client").stdout == HELLO
        assert cluster.kubectl_json("get", "pod", "client")["status"]["phase"] == "Succeeded"
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "-f", str(path), timeout=180)


def test_logs_exec_and_port_forward_reach_a_pod(cluster: KindCluster, nginx: Path) -> None:
    name = nginx_pods(cluster)[0]["metadata"]["name"]
    assert cluster.kubectl("exec", name, "--", "cat", "/var/www/html/index.html").stdout == HELLO
    command = [cluster.kubectl_path, "port-forward", "--address=127.0.0.1", name, ":8080"]
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | cluster.env())
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        match = FORWARDING.search(first)
        assert match, f"kubectl port-forward said {first!r}"
        assert http_get("127.0.0.1", int(match.group(1)), "/").endswith(HELLO)
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_deleting_the_deployment_cleans_every_node(cluster: KindCluster, nginx: Path) -> None:
    cluster.kubectl("delete", "--wait=true", "-f", str(nginx), timeout=300)

    def leftovers() -> list[str]:
        found = []
        for node in workers(cluster):
            found += [f"{node}: container {c['id'][:12]}" for c in cluster.crictl_json(node, "ps", "-a")["containers"]
                      if c["metadata"]["name"] == "nginx"]
            found += [f"{node}: pod {p['metadata']['name']}" for p in cluster.crictl_json(node, "pods")["items"]
                      if p["metadata"]["name"].startswith("nginx-")]
        return found

    # kubelet stops the pods at once and removes their sandboxes at its next garbage collection (each minute).
    wait_until(lambda: not leftovers(), timeout=240, interval=5, what="the nginx pods to leave the workers")
