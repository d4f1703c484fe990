"""A kind cluster of crishim nodes for the tests: docker of its own, the node image this repository builds,
and a cluster that is deleted afterwards, leaving the host as it was.

Everything long is cached outside the clone by the scripts it calls (script/kind/*): the second run builds
nothing and spends its time creating the cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import run, wait_until

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "script" / "kind"
CLUSTER = "crishim-e2e"
NETWORK = "crishim-kind"  # kind's docker network for this cluster, made by kind and removed after it
NODES = 3
DOCKER_HOST = "unix:///run/crishim-kind/docker.sock"  # script/kind/dockerd's
NGINX = "crishim.test/debian-nginx:stable"  # the seed image, loaded by `kind load image-archive`
BUSYBOX = "crishim.test/busybox:v1"  # loaded by `kind load docker-image`


@dataclass(frozen=True)
class HostState:
    """What the cluster must not leave behind on the host."""

    mounts: frozenset[str]
    links: frozenset[str]
    iptables: str

    @classmethod
    def read(cls) -> HostState:
        mounts = frozenset(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
        links = frozenset(p.name for p in Path("/sys/class/net").iterdir())
        return cls(mounts, links, _iptables_rules())

    def leftovers(self, after: HostState) -> list[str]:
        found = [f"mount {m}" for m in sorted(after.mounts - self.mounts)]
        found += [f"network interface {link}" for link in sorted(after.links - self.links)]
        before_rules, after_rules = set(self.iptables.splitlines()), set(after.iptables.splitlines())
        found += [f"iptables rule added: {rule}" for rule in sorted(after_rules - before_rules)]
        found += [f"iptables rule removed: {rule}" for rule in sorted(before_rules - after_rules)]
        return found


def _iptables_rules() -> str:
    # Rule lines only: the packet counters in the comment lines change all the time.
    out = run("iptables-save").stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


@dataclass
class Timings:
    started: float = 0.0  # time.monotonic() when `kind create cluster` began
    create_seconds: float = 0.0
    ready_seconds: float = 0.0


@dataclass
class KindCluster:
    kind: str
    image: str
    kubectl_path: str
    kubeconfig: Path
    docker_env: dict[str, str]
    name: str = CLUSTER
    timings: Timings = field(default_factory=Timings)

    def env(self) -> dict[str, str]:
        return self.docker_env | {"KUBECONFIG": str(self.kubeconfig), "KIND_EXPERIMENTAL_DOCKER_NETWORK": NETWORK}

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.kubectl_path, *args, env=self.env(), timeout=timeout, check=check)

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return found

    def kind_run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(self.kind, *args, "--name", self.name, env=self.env(), timeout=timeout)

    def node_names(self) -> list[str]:
        return sorted(run(self.kind, "get", "nodes", "--name", self.name, env=self.env()).stdout.split())

    def on_node(self, node: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run("docker", "exec", node, *command, env=self.docker_env, timeout=timeout)

    def crictl_json(self, node: str, *args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.on_node(node, "crictl", *args, "-o", "json").stdout)
        return found

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run("docker", *args, env=self.docker_env, timeout=timeout)


def _script(name: str, *args: str, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run one of script/kind/*; the last line it prints is its answer."""
    return run(SCRIPTS / name, *args, timeout=timeout, env=env).stdout.strip().splitlines()[-1]


def _docker_answers(env: dict[str, str]) -> bool:
    return run("docker", "version", env=env, check=False, timeout=30).returncode == 0


@contextmanager
def kind_docker() -> Iterator[dict[str, str]]:
    """The environment that reaches the kind nodes' docker (script/kind/dockerd), started if it is not running
    and stopped again afterwards; then checks that nothing of what ran is left on the host."""
    before = HostState.read()
    env = {"DOCKER_HOST": DOCKER_HOST}
    started = not _docker_answers(env)
    env["DOCKER_HOST"] = _script("dockerd", "start", timeout=120)
    try:
        yield env
    finally:
        if started:
            _script("dockerd", "stop", timeout=120)
    leftovers = before.leftovers(HostState.read())
    assert not leftovers, f"the kind tests left on the host: {leftovers}"


def build_node_image(docker_env: dict[str, str]) -> tuple[str, float]:
    """The node image's name, and the seconds it took to build (or find cached)."""
    started = time.monotonic()
    return _script("build-node-image", timeout=3600, env=docker_env), time.monotonic() - started


def install_kind() -> str:
    return _script("install-kind", timeout=600)


def nodes_ready(cluster: KindCluster) -> bool:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in n["status"].get("conditions", []))]
    return len(nodes) == NODES and len(ready) == NODES


def system_pods_ready(cluster: KindCluster) -> bool:
    """Every container of every kube-system pod ready: CoreDNS, kube-proxy and the pod network included."""
    pods = cluster.kubectl_json("-n", "kube-system", "get", "pods")["items"]
    statuses = [c for p in pods for c in p["status"].get("containerStatuses", [])]
    return bool(statuses) and all(c.get("ready") for c in statuses)


@contextmanager
def kind_cluster(workdir: Path, docker_env: dict[str, str], image: str, kubectl: str, *, name: str = CLUSTER,
                 config: Path = REPO / "kind-config.yaml") -> Iterator[KindCluster]:
    """kind create cluster (with the repository's kind-config.yaml unless told otherwise) until every node is
    Ready; deleted afterwards, with its network."""
    cluster = KindCluster(install_kind(), image, kubectl, workdir / "kubeconfig", docker_env, name)
    _delete(cluster)  # what an interrupted run left
    try:
        cluster.timings.started = time.monotonic()
        run(cluster.kind, "create", "cluster", "--name", name, "--config", config, "--image", image,
            "--kubeconfig", cluster.kubeconfig, "--retain", env=cluster.env(), timeout=900)
        cluster.timings.create_seconds = time.monotonic() - cluster.timings.started
        wait_until(lambda: nodes_ready(cluster), timeout=600, interval=0.5, what="three Ready nodes")
        cluster.timings.ready_seconds = time.monotonic() - cluster.timings.started
        yield cluster
    except BaseException:
        _export_logs(cluster, workdir / "kind-logs")
        raise
    finally:
        _delete(cluster)


def _export_logs(cluster: KindCluster, dest: Path) -> None:
    result = run(cluster.kind, "export", "logs", dest, "--name", cluster.name, env=cluster.env(), check=False,
                 timeout=300)
    print(f"kind logs exported to {dest} (exit {result.returncode})")


def _delete(cluster: KindCluster) -> None:
    run(cluster.kind, "delete", "cluster", "--name", cluster.name, env=cluster.env(), timeout=300)
    if run("docker", "network", "inspect", NETWORK, env=cluster.docker_env, check=False).returncode == 0:
        run("docker", "network", "rm", NETWORK, env=cluster.docker_env)


@dataclass(frozen=True)
class SystemdNode:
    """One node container started as kind starts them, without a cluster: systemd, crishim, no kubelet."""

    name: str
    docker_env: dict[str, str]

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("docker", "exec", self.name, "sh", "-ec", script, env=self.docker_env, timeout=timeout,
                   check=check)

    def copy_in(self, source: Path, dest: str) -> None:
        run("docker", "cp", source, f"{self.name}:{dest}", env=self.docker_env)


@contextmanager
def systemd_node(docker_env: dict[str, str], image: str, name: str) -> Iterator[SystemdNode]:
    run("docker", "rm", "-f", name, env=docker_env, check=False)
    # kind's own arguments for a node (pkg/cluster/internal/providers/docker/provision.go).
    run("docker", "run", "--name", name, "--hostname", name, "--detach", "--tty", "--privileged",
        "--security-opt", "seccomp=unconfined", "--tmpfs", "/tmp", "--tmpfs", "/run", "--volume", "/var",
        "--volume", "/lib/modules:/lib/modules:ro", "--cgroupns=private", "--init=false", image, env=docker_env)
    node = SystemdNode(name, docker_env)
    try:
        wait_until(lambda: "Reached target" in run("docker", "logs", name, env=docker_env).stdout
                   and "Multi-User System" in run("docker", "logs", name, env=docker_env).stdout,
                   timeout=120, interval=1, what=f"{name} to boot")
        yield node
    finally:
        # Volumes too: the anonymous /var volume holds the node's crishim store.
        run("docker", "rm", "-f", "--volumes", name, env=docker_env)
