"""Node features through kubelet on the kind cluster: what a pod spec asks for reaches the container through
crishim, observed from inside the container and in the pod's status."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kind_cluster import BUSYBOX, NGINX, KindCluster
from tests.support.procs import wait_until
from tests.support.seed_image import INDEX_HTML


@pytest.fixture
def run_pod(cluster: KindCluster, loaded_images: None, tmp_path: Path) -> Iterator[Any]:
    """Run a pod of one busybox container to completion; its status and its log."""
    names: list[str] = []

    def run(spec: dict[str, Any], command: str) -> tuple[dict[str, Any], str]:
        name = f"feature-{uuid.uuid4().hex[:8]}"
        container: dict[str, Any] = {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", command]}
        pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        pod_spec.update({k: v for k, v in spec.items() if k != "container"})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}
        container.update(spec.get("container", {}))
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(pod))
        names.append(name)
        cluster.kubectl("apply", "-f", str(path))

        def finished() -> bool:
            return cluster.kubectl_json("get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed")

        wait_until(finished, timeout=180, interval=2, what=f"pod {name} to finish")
        status = cluster.kubectl_json("get", "pod", name)["status"]
        return status, cluster.kubectl("logs", name).stdout

    yield run
    for name in names:
        cluster.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def crun_class(cluster: KindCluster, tmp_path: Path) -> Iterator[str]:
    """A RuntimeClass for crishim's crun handler: runc 1.1.5 cannot make idmapped mounts, so it advertises no
    user namespaces, and kubelet refuses hostUsers: false on a handler that does not."""
    path = tmp_path / "runtimeclass.json"
    path.write_text(json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                "metadata": {"name": "crun"}, "handler": "crun"}))
    cluster.kubectl("apply", "-f", str(path))
    yield "crun"
    cluster.kubectl("delete", "--ignore-not-found", "-f", str(path))


def test_a_pod_without_host_users_runs_in_its_own_user_namespace(run_pod: Any, crun_class: str) -> None:
    status, log = run_pod({"hostUsers": False, "runtimeClassName": crun_class}, "cat /proc/self/uid_map; id -u")
    assert status["phase"] == "Succeeded", status
    inside, outside, count = log.split("\n")[0].split()
    assert inside == "0" and outside != "0" and int(count) == 65536, log  # root inside, someone else outside
    assert log.split("\n")[1] == "0"


def test_an_image_volume_shows_the_image_read_only(run_pod: Any) -> None:
    spec = {"volumes": [{"name": "site", "image": {"reference": NGINX, "pullPolicy": "Never"}}],
            "container": {"volumeMounts": [{"name": "site", "mountPath": "/site"}]}}
    status, log = run_pod(spec, "cat /site/var/www/html/index.html; touch /site/x 2>/dev/null && echo writable || true")
    assert status["phase"] == "Succeeded", status
    assert log == INDEX_HTML  # and no "writable"


def test_strict_supplemental_groups_and_the_user_kubelet_reports(run_pod: Any) -> None:
    spec = {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4242],
                                "supplementalGroupsPolicy": "Strict"}}
    status, log = run_pod(spec, "id -u; id -G")
    assert status["phase"] == "Succeeded", status
    uid, groups = log.split("\n")[:2]
    assert uid == "1000"
    assert sorted(int(g) for g in groups.split()) == [3000, 4242]  # nothing merged in from the image
    (container,) = status["containerStatuses"]
    assert container["user"]["linux"] == {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4242]}
