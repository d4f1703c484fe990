"""Pods through crictl against crishim with the real runc, conmon and CNI plugins: the whole life of a pod and
its container, reaching a pod over the network, and the pod-level namespace modes (network, PID, IPC).

Every test gets its own daemon on its own bridge and subnet (tests/support/cri_env.py); after it every pod is
removed and the host must hold nothing of them any more.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2, api_pb2_grpc
from tests.support.cni_network import free_port, http_get
from tests.support.cri_configs import CONTAINER, NODE, POD, TCP
from tests.support.cri_env import CriEnv
from tests.support.procs import wait_until
from tests.support.seed_image import INDEX_HTML, SeedImage

DNS = {"servers": ["10.96.0.10", "192.0.2.53"], "searches": ["ns.svc.cluster.local", "svc.cluster.local"],
       "options": ["ndots:5", "timeout:2"]}
RESOLV_CONF = ("search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 192.0.2.53\n"
               "options ndots:5 timeout:2\n")


def exec_sync(env: CriEnv, container_id: str, *cmd: str, timeout: int = 0) -> api_pb2.ExecSyncResponse:
    """ExecSync straight over gRPC: crictl prints neither the exact output nor the exit code of a failure."""
    with grpc.insecure_channel(f"unix://{env.daemon.socket}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        response: api_pb2.ExecSyncResponse = stub.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout), timeout=60)
        return response


def test_pod_and_container_from_runp_to_rmp(cri: CriEnv, tmp_path: Path) -> None:
    host_port = free_port()
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data.txt").write_text("from the host\n")
    pod_config = cri.pod(hostname="web-0", dns=DNS, labels={"app": "web", "tier": "front"},
                         port_mappings=[{"protocol": TCP, "container_port": 8080, "host_port": host_port,
                                         "host_ip": "127.0.0.1"}])
    pod_id = cri.runp(pod_config)

    # crictl pods / inspectp: ready, an IP from the test bridge's subnet, the labels.
    listed = cri.json("pods", "--id", pod_id)["items"]
    assert [(p["id"], p["state"], p["labels"]) for p in listed] == [
        (pod_id, "SANDBOX_READY", {"app": "web", "tier": "front"})]
    assert cri.crictl("pods", "-q", "--label", "app=web").stdout.split() == [pod_id]
    assert cri.crictl("pods", "-q", "--label", "app=db").stdout.split() == []
    status = cri.inspectp(pod_id)["status"]
    assert status["state"] == "SANDBOX_READY"
    assert status["metadata"]["name"] == pod_config["metadata"]["name"]
    pod_ip = ipaddress.ip_address(status["network"]["ip"])
    assert pod_ip in cri.network.subnet and pod_ip != cri.network.gateway
    assert cri.network.allocations() == [str(pod_ip)]

    # crictl create + start: a long-running container with a host volume.
    container_id = cri.run(pod_id, cri.container(
        "app", labels={"role": "server"},
        mounts=[{"container_path": "/data", "host_path": str(volume), "readonly": True}]))

    # crictl ps / inspect.
    (listed_container,) = cri.json("ps", "--pod", pod_id)["containers"]
    assert listed_container["id"] == container_id and listed_container["state"] == "CONTAINER_RUNNING"
    assert listed_container["imageRef"] == cri.image.repo_digest
    container = cri.status(container_id)
    assert container["state"] == "CONTAINER_RUNNING"
    assert container["image"]["image"] == cri.image.ref
    assert container["imageRef"] == cri.image.repo_digest
    assert container["imageId"] == cri.image.config_digest
    assert container["labels"] == {"role": "server"}
    log_path = Path(pod_config["log_directory"]) / "app.log"
    assert container["logPath"] == str(log_path)
    assert [(m["containerPath"], m["hostPath"], m["readonly"]) for m in container["mounts"]] == [
        ("/data", str(volume), True)]
    assert container["startedAt"] != "0001-01-01T00:00:00Z" and container["exitCode"] == 0

    # crictl exec -s: hostname, resolv.conf, user, a mount, exit codes and the timeout.
    assert cri.exec(container_id, "busybox", "hostname").stdout.strip() == "web-0"
    assert cri.exec(container_id, "cat", "/etc/hostname").stdout.strip() == "web-0"
    assert cri.exec(container_id, "cat", "/etc/resolv.conf").stdout.strip() == RESOLV_CONF.strip()
    assert cri.exec(container_id, "id", "-u").stdout.strip() == "0"
    assert cri.exec(container_id, "cat", "/data/data.txt").stdout.strip() == "from the host"
    assert cri.exec(container_id, "sh", "-c", "echo x > /data/new", check=False).returncode != 0
    failed = cri.exec(container_id, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert failed.returncode != 0 and "exited with 3" in failed.stderr
    response = exec_sync(cri, container_id, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (response.exit_code, response.stdout, response.stderr) == (3, b"out\n", b"err\n")
    started = time.monotonic()
    timed_out = cri.exec(container_id, "busybox", "sleep", "30", check=False, timeout=1)
    assert timed_out.returncode != 0 and "timed out" in timed_out.stderr
    assert time.monotonic() - started < 10
    assert cri.exec(container_id, "true").returncode == 0  # the container is fine after a killed exec

    # The log file is where inspect says, in the CRI format.
    first = log_path.read_text().splitlines()[0].split(" ", 3)
    assert first[1:] == ["stdout", "F", "started"]

    # crictl stop, rm, stopp, rmp.
    cri.crictl("stop", "-t", "5", container_id)
    stopped = cri.status(container_id)
    assert (stopped["state"], stopped["exitCode"], stopped["reason"]) == ("CONTAINER_EXITED", 0, "Completed")
    cri.crictl("rm", container_id)
    assert cri.crictl("ps", "-aq", "--pod", pod_id).stdout.split() == []
    cri.crictl("stopp", pod_id)
    assert cri.inspectp(pod_id)["status"]["state"] == "SANDBOX_NOTREADY"
    assert cri.network.allocations() == []  # the network is detached at stop already
    cri.crictl("rmp", pod_id)
    assert cri.crictl("pods", "-q").stdout.split() == []
    assert cri.inventory() == []


def test_tcp_server_in_a_pod_is_reachable_on_the_pod_ip_and_the_host_port(cri: CriEnv) -> None:
    host_port = free_port()
    pod_id = cri.runp(cri.pod(port_mappings=[{"protocol": TCP, "container_port": 8080, "host_port": host_port}]))
    marker = secrets.token_hex(8)
    server = f"mkdir /www && echo {marker} > /www/marker.txt && exec busybox httpd -f -p 8080 -h /www"
    container_id = cri.run(pod_id, cri.container("httpd", command=["sh", "-c", server]))
    pod_ip = cri.pod_ip(pod_id)
    _wait_for_listener(pod_ip, 8080)

    assert marker in http_get(pod_ip, 8080)
    assert marker in http_get("127.0.0.1", host_port)
    nat = "\n".join(cri.network.nat_rules())
    assert f"--dport {host_port} " in nat and f"{pod_ip}:8080" in nat

    cri.crictl("stopp", pod_id)
    assert cri.network.nat_rules() == []
    with pytest.raises(OSError):
        http_get("127.0.0.1", host_port, timeout=1)
    assert cri.state(container_id) == "CONTAINER_EXITED"


def test_nginx_of_the_seed_image_answers_on_the_pod_ip(cri_factory: Callable[..., CriEnv],
                                                        seed_image: SeedImage) -> None:
    env = cri_factory(image=seed_image.pushed)
    pod_id = env.runp()
    container_id = env.run(pod_id, env.container("nginx", command=None, args=None))
    pod_ip = env.pod_ip(pod_id)
    _wait_for_listener(pod_ip, 8080, timeout=30)
    reply = http_get(pod_ip, 8080, path="/")
    assert reply.startswith("HTTP/1.1 200") and INDEX_HTML in reply
    assert "404" in http_get(pod_ip, 8080, path="/index.nginx-debian.html").split("\r\n")[0]
    # The image's stop signal (SIGQUIT) makes nginx shut down gracefully.
    env.crictl("stop", "-t", "10", container_id)
    assert env.status(container_id)["exitCode"] == 0


def test_host_network_pod_uses_the_node_network_without_cni(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod(hostname="ignored", namespace_options={"network": NODE}))
    container_id = cri.run(pod_id, cri.container("host"))

    info = cri.inspectp(pod_id)
    assert info["status"]["linux"]["namespaces"]["options"]["network"] == "NODE"
    assert info["info"]["netNamespacePath"] == ""
    assert info["status"]["network"]["ip"] == ""
    assert cri.network.allocations() == [] and cri.network.veths() == []
    assert not any((cri.daemon.state / "netns").glob("*"))

    # The same interfaces as the node (read again if another test added or removed one in between).
    for _ in range(5):
        in_container = _interfaces(cri.exec(container_id, "cat", "/proc/net/dev").stdout)
        if in_container == _interfaces(Path("/proc/self/net/dev").read_text()):
            break
    else:
        raise AssertionError(f"the container sees {in_container}, the node {Path('/proc/self/net/dev').read_text()}")
    assert len(in_container) > 1  # more than lo: the node's own interfaces
    # A pod on the node's network keeps the node's hostname, as in containerd.
    assert cri.exec(container_id, "busybox", "hostname").stdout.strip() == socket.gethostname()
    assert _ns(cri, container_id, "net") == os.readlink("/proc/self/ns/net")


def test_containers_of_a_pod_share_its_pid_namespace_in_pod_mode(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod(namespace_options={"pid": POD}))
    marker = "31337"
    first = cri.run(pod_id, cri.container("first", command=["busybox", "sleep", marker]))
    second = cri.run(pod_id, cri.container("second"))
    # Each sees the other's processes; PID 1 is the pod's namespace holder, not either container.
    assert f"sleep {marker}" in cri.exec(second, "busybox", "ps", "-o", "pid,args").stdout
    assert "sleep 1000" in cri.exec(first, "busybox", "ps", "-o", "pid,args").stdout
    assert _ns(cri, first, "pid") == _ns(cri, second, "pid") != os.readlink("/proc/self/ns/pid")
    assert cri.exec(first, "cat", "/proc/1/cmdline").stdout.split("\0")[0].endswith("catatonit")

    # A container asking for its own PID namespace sees only itself.
    alone = cri.run(pod_id, cri.container("alone", security_context={"namespace_options": {"pid": CONTAINER}}))
    processes = cri.exec(alone, "busybox", "ps", "-o", "pid,args").stdout
    assert f"sleep {marker}" not in processes
    assert _ns(cri, alone, "pid") != _ns(cri, first, "pid")
    assert "trap" in cri.exec(alone, "cat", "/proc/1/cmdline").stdout  # its own init is PID 1


def test_pid_namespace_per_container_in_container_mode(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod(namespace_options={"pid": CONTAINER}))
    assert cri.inspectp(pod_id)["info"]["pid"] == 0  # no holder needed
    first = cri.run(pod_id, cri.container("first", command=["busybox", "sleep", "31337"]))
    second = cri.run(pod_id, cri.container("second"))
    assert "sleep 31337" not in cri.exec(second, "busybox", "ps", "-o", "pid,args").stdout
    assert _ns(cri, first, "pid") != _ns(cri, second, "pid")


def test_ipc_namespace_is_the_pods_or_the_nodes(cri: CriEnv) -> None:
    pod_id = cri.runp(cri.pod())
    first, second = (cri.run(pod_id, cri.container(name)) for name in ("first", "second"))
    assert _ns(cri, first, "ipc") == _ns(cri, second, "ipc") != os.readlink("/proc/self/ns/ipc")
    # The pod's /dev/shm is shared between its containers, and is not the node's.
    cri.exec(first, "sh", "-c", "echo shared > /dev/shm/pod-marker")
    assert cri.exec(second, "cat", "/dev/shm/pod-marker").stdout.strip() == "shared"
    assert not Path("/dev/shm/pod-marker").exists()
    assert _ns(cri, first, "uts") == _ns(cri, second, "uts") != os.readlink("/proc/self/ns/uts")

    host_pod = cri.runp(cri.pod(namespace_options={"ipc": NODE}))
    on_host = cri.run(host_pod, cri.container("on-host"))
    assert cri.inspectp(host_pod)["info"]["ipcNamespacePath"] == ""
    assert _ns(cri, on_host, "ipc") == os.readlink("/proc/self/ns/ipc")
    marker = Path("/dev/shm") / f"crishim-test-{secrets.token_hex(4)}"
    marker.write_text("node\n")
    try:
        assert cri.exec(on_host, "cat", f"/dev/shm/{marker.name}").stdout.strip() == "node"
    finally:
        marker.unlink()


# --- helpers -------------------------------------------------------------------------------------------------


def _ns(env: CriEnv, container_id: str, kind: str) -> str:
    """The namespace of the container's init, as the host sees it (``net:[4026532...]``)."""
    return os.readlink(f"/proc/{env.container_pid(container_id)}/ns/{kind}")


def _interfaces(proc_net_dev: str) -> set[str]:
    return {line.split(":", 1)[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line}


def _wait_for_listener(host: str, port: int, timeout: float = 10) -> None:
    def accepts() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(accepts, timeout=timeout, what=f"a listener on {host}:{port}", interval=0.1)
