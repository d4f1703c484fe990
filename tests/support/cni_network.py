"""A throw-away CNI network for tests: the real plugins (bridge, host-local, portmap, loopback) with a bridge,
a /24 under 10.99.0.0/16 and a name of its own, and host-local's allocations in the test's tmp dir.

The host-wide side effects of the plugins (iptables rules and chains, net.ipv4.ip_forward, the bridge) are
undone when the network goes, even after a failed test. Tests of parallel runs take turns through a lock file,
held for the network's whole life, so one run's cleanup never removes another's shared portmap chains.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import random
import re
import secrets
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.cni import CNI
from tests.support.tools import binary, require_file, require_root

__all__ = [
    "IP_FORWARD",
    "LOCK",
    "PLUGINS",
    "PLUGIN_DIR",
    "SHARED_PORTMAP_CHAINS",
    "SHIPPED_CONFLIST",
    "Network",
    "conflist",
    "free_port",
    "free_subnet",
    "http_get",
    "in_netns",
    "iptables",
    "require_plugins",
    "rules",
    "temporary_network",
]

PLUGIN_DIR = Path("/usr/lib/cni")
PLUGINS = ("bridge", "host-local", "portmap", "loopback")
LOCK = Path(tempfile.gettempdir()) / "crishim-cni-tests.lock"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SHARED_PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")
SHIPPED_CONFLIST = Path(__file__).resolve().parents[2] / "deploy" / "cni" / "10-crishim-bridge.conflist"


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    conf_dir: Path  # holds the one config file: hand it to crishim as --cni-conf-dir
    ipam_dir: Path  # host-local's dataDir: <ipam_dir>/<name>/<ip> per allocation
    cni: CNI  # crishim's client on this network, for tests of the client itself

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def allocations(self) -> list[str]:
        """The IPs host-local has handed out and not released (its lock and last-reserved files aside)."""
        folder = self.ipam_dir / self.name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if _is_ip(p.name))

    def veths(self) -> list[str]:
        """Host ends of the pod interfaces still attached to the bridge."""
        out = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge], capture_output=True, text=True)
        return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line]

    def nat_rules(self) -> list[str]:
        """nat rules that belong to this network: its name, its subnet or an address in it appears in them."""
        prefix = ".".join(str(self.subnet.network_address).split(".")[:3]) + "."  # subnets here are /24s
        return [line for line in rules("nat")
                if self.name in line or str(self.subnet) in line or re.search(rf"\b{re.escape(prefix)}\d", line)]


# ---- host-side guards --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _test_lock(timeout: float = 300.0) -> Iterator[None]:
    with open(LOCK, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run held {LOCK} for {timeout}s")
                time.sleep(0.1)
        yield


def iptables(*args: str, check: bool = True) -> str:
    result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def rules(table: str) -> list[str]:
    return iptables("-t", table, "-S").splitlines()


def _chains(lines: list[str]) -> set[str]:
    return {line.split()[1] for line in lines if line.startswith("-N ")}


def _remove_network_rules(network: Network, before: dict[str, list[str]]) -> None:
    """Remove the rules and chains the test's network left (DEL should have; a failed test may not have)."""
    marks = (network.name, str(network.subnet))  # the name holds a random token, so it matches only ours
    for table, old in before.items():
        lines = rules(table)
        ours = [line for line in lines if line.startswith("-A ") and any(m in line for m in marks)]
        targets = {m.group(1) for line in ours if (m := re.search(r" -j (\S+)", line))}
        chains = (targets & _chains(lines)) - _chains(old)
        for chain in chains:
            iptables("-t", table, "-F", chain)
        for line in ours:
            if line.split()[1] not in chains:
                iptables("-t", table, "-D", *shlex.split(line)[1:], check=False)
        for chain in chains:
            iptables("-t", table, "-X", chain, check=False)


def _remove_idle_portmap_chains(before: dict[str, list[str]]) -> None:
    """portmap's shared chains outlive DEL; drop them if this test made them and nobody uses them now."""
    lines = rules("nat")
    if "CNI-HOSTPORT-DNAT" in _chains(before["nat"]) or "CNI-HOSTPORT-DNAT" not in _chains(lines):
        return
    if any(line.startswith("-A CNI-HOSTPORT-DNAT ") for line in lines):
        return
    for line in lines:
        if line.startswith("-A ") and re.search(r" -j CNI-HOSTPORT-(DNAT|MASQ)$", line):
            iptables("-t", "nat", "-D", *shlex.split(line)[1:], check=False)
    for chain in SHARED_PORTMAP_CHAINS:
        iptables("-t", "nat", "-F", chain, check=False)
        iptables("-t", "nat", "-X", chain, check=False)


def free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    candidates = [ipaddress.IPv4Network(f"10.99.{i}.0/24") for i in range(256)]
    random.shuffle(candidates)
    for net in candidates:
        if f"10.99.{net.network_address.packed[2]}." not in used:
            return net
    pytest.skip("no free /24 in 10.99.0.0/16 for a test network")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# ---- the network -------------------------------------------------------------------------------------------


def require_plugins() -> None:
    require_root("CNI plugins")
    for plugin in PLUGINS:
        require_file(PLUGIN_DIR / plugin, "containernetworking-plugins")
    for tool in ("iptables", "ip", "ss", "nsenter", "unshare"):
        binary(tool)


def conflist(name: str, bridge: str, subnet: ipaddress.IPv4Network, ipam_dir: Path) -> dict[str, Any]:
    # The shipped config with the test's names, so the test exercises the same plugin chain.
    conf: dict[str, Any] = json.loads(SHIPPED_CONFLIST.read_text())
    conf["name"] = name
    bridge_plugin = conf["plugins"][0]
    bridge_plugin["bridge"] = bridge
    bridge_plugin["ipam"]["ranges"] = [[{"subnet": str(subnet)}]]
    bridge_plugin["ipam"]["dataDir"] = str(ipam_dir)
    return conf


@contextlib.contextmanager
def temporary_network(workdir: Path, *, hold_lock: bool = True, lock_timeout: float = 300.0) -> Iterator[Network]:
    """A fresh network configured under workdir (net.d/, ipam/, cache/); everything it did to the host is
    undone on exit. A long user (critest runs for many minutes) passes hold_lock=False and takes the lock only
    while it sets up and tears down, so other runs are not kept waiting past their lock timeout."""
    require_plugins()
    life = _test_lock(lock_timeout) if hold_lock else contextlib.nullcontext()
    step = contextlib.nullcontext if hold_lock else functools.partial(_test_lock, lock_timeout)
    with life:
        with step():
            net, before, forward = _make_network(workdir)
        try:
            yield net
        finally:
            _undo_network(net, before)  # only what is this network's own: no lock needed
            with step():
                _remove_idle_portmap_chains(before)
                # Networks that hold the lock are gone by now; one that does not may still need forwarding.
                if IP_FORWARD.read_text() != forward and not _other_test_bridges(net):
                    IP_FORWARD.write_text(forward)


def _make_network(workdir: Path) -> tuple[Network, dict[str, list[str]], str]:
    token = secrets.token_hex(4)
    conf_dir, ipam_dir = workdir / "net.d", workdir / "ipam"
    conf_dir.mkdir(parents=True)
    net = Network(f"crishim-test-{token}", f"cshim{token}", free_subnet(), conf_dir, ipam_dir,
                  CNI(conf_dir, workdir / "cache", [PLUGIN_DIR]))
    (conf_dir / "10-test.conflist").write_text(json.dumps(conflist(net.name, net.bridge, net.subnet, ipam_dir)))
    return net, {table: rules(table) for table in ("nat", "filter")}, IP_FORWARD.read_text()


def _undo_network(net: Network, before: dict[str, list[str]]) -> None:
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
    _remove_network_rules(net, before)


def _other_test_bridges(net: Network) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip() for line in out.splitlines() if ":" in line]
    return [name for name in names if name.startswith("cshim") and name != net.bridge]


# ---- reaching a pod ----------------------------------------------------------------------------------------


def in_netns(netns: Path, *command: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns}", "--", *command], capture_output=True, text=True).stdout


def http_get(host: str, port: int, path: str = "/marker.txt", timeout: float = 5) -> str:
    # A raw request: urllib would honour proxy variables, and the traffic must stay on this host.
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
