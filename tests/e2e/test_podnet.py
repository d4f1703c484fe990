"""podnet (deploy/kind/podnet), the pod network of kind clusters on crishim, against a real kube-apiserver: in a
network namespace of the test's own standing in for a node, it writes the node's CNI config, routes the other
nodes' pod CIDRs via their InternalIPs as nodes come and go, masquerades traffic leaving the pod subnet, and
goes at once when told to.

The API server listens on the host end of a veth pair whose other end is in the namespace (on a /24 no route of
the host's touches): the address kind would give as CONTROL_PLANE_ENDPOINT. Node objects need no kubelet: the
test writes their spec and status.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.cni import load_config_list
from tests.support.cni_network import free_subnet
from tests.support.kube_build import KubeBinaries
from tests.support.kube_control_plane import ControlPlane, control_plane
from tests.support.procs import run, wait_until
from tests.support.tools import binary, require_root

PODNET = Path(__file__).resolve().parents[2] / "deploy" / "kind" / "podnet"
POD_SUBNET = "10.244.0.0/16"


@dataclass(frozen=True)
class Node:
    netns: str
    plane: ControlPlane
    account: Path  # ca.crt and token, as a pod's service account volume holds them
    subnet: ipaddress.IPv4Network  # .1 the API server's end of the veth, .2 this node, .3 and .4 other nodes

    def address(self, host: int) -> str:
        return str(self.subnet[host])

    def ip(self, *args: str) -> str:
        return run("ip", "netns", "exec", self.netns, "ip", *args).stdout

    def routes(self) -> str:
        return self.ip("-4", "route", "show", "proto", "75")


@pytest.fixture
def node(tmp_path: Path, kube_binaries: KubeBinaries) -> Iterator[Node]:
    require_root("network namespaces, routes and iptables")
    for tool in ("ip", "iptables", "etcd"):
        binary(tool)
    netns, host_end, subnet = f"podnet-{secrets.token_hex(3)}", f"pn{secrets.token_hex(3)}", free_subnet()
    host_ip = str(subnet[1])
    run("ip", "netns", "add", netns)
    try:
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "addr", "add", f"{host_ip}/{subnet.prefixlen}", "dev", host_end)
        run("ip", "link", "set", host_end, "up")
        for command in (["addr", "add", f"{subnet[2]}/{subnet.prefixlen}", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
            run("ip", "netns", "exec", netns, "ip", *command)
        with control_plane(tmp_path / "control-plane", kube_binaries.kube_apiserver, kube_binaries.kubectl,
                           advertise=host_ip, bind=host_ip) as plane:
            account = tmp_path / "serviceaccount"
            account.mkdir()
            (account / "ca.crt").write_bytes((plane.workdir / "apiserver-pki" / "apiserver.crt").read_bytes())
            (account / "token").write_text(plane.token)
            yield Node(netns, plane, account, subnet)
    finally:
        # podnet makes a session of its own: what is left of it is found by the namespace it runs in.
        for pid in run("ip", "netns", "pids", netns, check=False).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        run("ip", "netns", "delete", netns, check=False)  # its end of the veth goes, and the pair with it


def add_node(plane: ControlPlane, name: str, cidr: str, address: str) -> None:
    plane.kubectl.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                         "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
    status = {"status": {"addresses": [{"type": "InternalIP", "address": address},
                                       {"type": "Hostname", "address": name}]}}
    plane.kubectl.run("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


@pytest.fixture
def podnet(node: Node, tmp_path: Path, kube_binaries: KubeBinaries) -> Iterator[subprocess.Popen[str]]:
    add_node(node.plane, "node-a", "10.244.1.0/24", node.address(2))
    add_node(node.plane, "node-b", "10.244.2.0/24", node.address(3))
    env = {"PATH": f"{kube_binaries.kubectl.parent}:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_NAME": "node-a",
           "POD_SUBNET": POD_SUBNET, "CONTROL_PLANE_ENDPOINT": node.plane.url.removeprefix("https://"),
           "SERVICE_ACCOUNT": str(node.account), "CNI_CONF": str(tmp_path / "10-kindnet.conflist"),
           "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    with (tmp_path / "podnet.log").open("w") as log:
        process = subprocess.Popen(["ip", "netns", "exec", node.netns, "sh", str(PODNET)], env=env, text=True,
                                   stdout=log, stderr=subprocess.STDOUT)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()
    print(f"--- podnet log ---\n{(tmp_path / 'podnet.log').read_text()}")


def test_podnet_writes_the_cni_config_routes_the_other_nodes_and_masquerades(
        node: Node, podnet: subprocess.Popen[str], tmp_path: Path) -> None:
    conf = tmp_path / "10-kindnet.conflist"
    wait_until(conf.exists, timeout=30, what="podnet's CNI config")
    network = load_config_list(tmp_path)
    assert network.plugins[0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]

    wait_until(lambda: "10.244.2.0/24" in node.routes(), timeout=30, what="the route to node-b's pods")
    assert node.routes().split() == ["10.244.2.0/24", "via", node.address(3), "dev", "eth0"]
    chain = run("ip", "netns", "exec", node.netns, "iptables", "-t", "nat", "-S", "PODNET-MASQ").stdout
    assert f"-A PODNET-MASQ -d {POD_SUBNET} -j RETURN" in chain and "-A PODNET-MASQ -j MASQUERADE" in chain
    postrouting = run("ip", "netns", "exec", node.netns, "iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    assert f"-A POSTROUTING -s {POD_SUBNET} -j PODNET-MASQ" in postrouting

    add_node(node.plane, "node-c", "10.244.3.0/24", node.address(4))
    wait_until(lambda: "10.244.3.0/24" in node.routes(), timeout=30, what="the route to node-c's pods")
    node.plane.kubectl.run("delete", "node", "node-b")
    wait_until(lambda: "10.244.2.0/24" not in node.routes(), timeout=30, what="node-b's route to go")
    assert node.routes().split() == ["10.244.3.0/24", "via", node.address(4), "dev", "eth0"]
    assert "10.244.1.0/24" not in node.routes()  # its own pods are on the node: no route of podnet's

    os.kill(podnet.pid, signal.SIGTERM)  # ip netns exec execs: this is podnet's shell
    assert podnet.wait(timeout=5) == 0
