"""kubectl exec, attach and port-forward on the one-node cluster: kube-apiserver → kubelet → crishim's
streaming server → the container. kubectl's port-forward listens on loopback; everything else stays on the
test's bridge.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import phase_failed
from tests.support.cni_network import http_get
from tests.support.images import PushedImage
from tests.support.kube_manifests import TICKER, container, pod
from tests.support.kube_node import KubeNode
from tests.support.procs import wait_until

BUSYBOX = "oci"
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080")


@pytest.fixture
def pods(cluster: KubeNode, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    if created:
        # Beyond the pods' 30 s grace period: kubelet's next sync after the kill can take as long again.
        cluster.kubectl.run("delete", "pod", "--ignore-not-found", "--wait=true", "--timeout=150s", *created,
                            timeout=180)
    if phase_failed(request):
        print(f"\n--- kubelet log tail ---\n{cluster.kubelet.log_tail(40)}")
        print(f"\n--- crishim log tail ---\n{cluster.crishim.log_tail(40)}")


def _start(cluster: KubeNode, pods: list[str], manifest: dict[str, Any], phase: str = "Running") -> str:
    cluster.kubectl.apply(manifest)
    name = str(manifest["metadata"]["name"])
    pods.append(name)

    def reached() -> bool:
        found = cluster.kubectl.json("get", "pod", name)
        return bool(found["status"].get("phase") == phase)

    wait_until(reached, timeout=90, what=f"pod {name} {phase}", interval=0.5)
    return name


def test_exec_returns_output_streams_and_exit_code(cluster: KubeNode, test_images: dict[str, PushedImage],
                                                   pods: list[str]) -> None:
    name = _start(cluster, pods, pod("exec", [container("exec", test_images[BUSYBOX].ref, TICKER)],
                                     node_name=cluster.name))
    proc = cluster.kubectl.run("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    assert "err\n" in proc.stderr
    piped = cluster.kubectl.run("exec", "-i", name, "--", "sh", "-c", "tr a-z A-Z", input="hello crishim\n")
    assert piped.stdout == "HELLO CRISHIM\n"


def test_attach_feeds_stdin_and_returns_output(cluster: KubeNode, test_images: dict[str, PushedImage],
                                               pods: list[str]) -> None:
    reader = container("reader", test_images[BUSYBOX].ref, ["sh", "-c", "read line; echo got $line"],
                       stdin=True, stdinOnce=True)
    name = _start(cluster, pods, pod("attach", [reader], node_name=cluster.name, restartPolicy="Never"))
    proc = cluster.kubectl.run("attach", "-i", name, "-c", "reader", input="ping\n", timeout=60)
    assert "got ping" in proc.stdout
    wait_until(lambda: cluster.kubectl.json("get", "pod", name)["status"].get("phase") == "Succeeded",
               timeout=30, what="the reader to finish")
    assert cluster.kubectl.run("logs", name).stdout == "got ping\n"


def test_port_forward_reaches_the_pod(cluster: KubeNode, test_images: dict[str, PushedImage],
                                      pods: list[str]) -> None:
    web = container("web", test_images[BUSYBOX].ref,
                    ["sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && "
                                 "exec busybox httpd -f -p 8080 -h /www"])
    name = _start(cluster, pods, pod("forward", [web], node_name=cluster.name))
    command = [str(cluster.kubectl.binary), f"--kubeconfig={cluster.kubectl.kubeconfig}", "port-forward",
               "--address=127.0.0.1", name, ":8080"]
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        match = FORWARDING.search(first)
        assert match, f"kubectl port-forward said {first!r}"
        port = int(match.group(1))
        for _ in range(2):  # each request is a new stream through the same tunnel
            answer = http_get("127.0.0.1", port, "/index.html")
            assert answer.startswith("HTTP/1.")
            assert answer.endswith("forwarded\n")
    finally:
        forward.terminate()
        forward.wait(timeout=10)


