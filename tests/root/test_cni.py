"""The CNI client against the real plugins (bridge, host-local, portmap, loopback) and a pinned netns.

Every test network (tests/support/cni_network.py) has its own name, bridge and /24 under 10.99.0.0/16, and
host-local keeps its allocations in the test's tmp dir; what the plugins change on the host is undone after
each test. Fake plugins (small Python scripts) show exactly what the client hands a plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from errdefs import CrishimError, DeadlineExceeded, FailedPrecondition
from runtime import namespaces
from runtime.cni import CNI, CNIResult, PodRef, PortMapping, load_config_list
from tests.support.cni_network import (
    PLUGIN_DIR,
    PLUGINS,
    SHIPPED_CONFLIST,
    Network,
    conflist,
    free_port,
    http_get,
    in_netns,
    rules,
    temporary_network,
)

POD = PodRef("web", "default", "7a3c1f9e-0000-4000-8000-000000000001")


@dataclass(frozen=True)
class Pod:
    id: str
    netns: Path


# ---- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with temporary_network(tmp_path) as net:
        yield net


@pytest.fixture
def pod(tmp_path: Path, network: Network) -> Iterator[Pod]:
    state = tmp_path / "state"
    pod_id = secrets.token_hex(32)
    pinned = namespaces.pin(state, pod_id, {"net"})
    assert pinned.net is not None
    try:
        yield Pod(pod_id, pinned.net)
    finally:
        with contextlib.suppress(CrishimError):
            network.cni.delete(pinned.net, pod_id, POD)
        namespaces.unpin(state, pod_id)
        namespaces.release_dirs(state)


@contextlib.contextmanager
def _http_server(netns: Path, root: Path, port: int) -> Iterator[None]:
    """python -m http.server inside the pod's netns, serving ``root``."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", "--", sys.executable, "-m", "http.server", "--bind", "0.0.0.0", str(port)],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "LISTEN" not in in_netns(netns, "ss", "-Htln", f"sport = :{port}"):
            assert proc.poll() is None, "http.server exited in the netns"
            assert time.monotonic() < deadline, "http.server did not start listening in the netns"
            time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait()


def _pod_ip(result: CNIResult) -> str:
    ips = result.pod_ips()
    assert len(ips) == 1, result
    return str(ips[0].address.ip)


# ---- tests ---------------------------------------------------------------------------------------------------


def test_add_gives_the_pod_a_reachable_ip(network: Network, pod: Pod, tmp_path: Path) -> None:
    result = network.cni.add(pod.netns, pod.id, POD)

    (ip,) = result.pod_ips()
    assert ip.address.network == network.subnet
    assert ip.gateway == network.subnet.network_address + 1
    eth0 = result.interfaces[ip.interface or 0]
    assert eth0.name == "eth0" and eth0.sandbox == str(pod.netns)
    assert f"inet {ip.address} " in in_netns(pod.netns, "ip", "-4", "addr", "show", "eth0")
    assert network.cni.cached_result(pod.id) == result

    marker = secrets.token_hex(8)
    (tmp_path / "marker.txt").write_text(marker)
    with _http_server(pod.netns, tmp_path, 8000):
        assert marker in http_get(str(ip.address.ip), 8000)


def test_port_mapping_reaches_the_pod_from_the_host_loopback(network: Network, pod: Pod, tmp_path: Path) -> None:
    host_port = free_port()
    result = network.cni.add(pod.netns, pod.id, POD, port_mappings=[PortMapping(host_port, 8000)])
    nat = "\n".join(rules("nat"))
    assert f"--dport {host_port} -j DNAT --to-destination {_pod_ip(result)}:8000" in nat

    marker = secrets.token_hex(8)
    (tmp_path / "marker.txt").write_text(marker)
    with _http_server(pod.netns, tmp_path, 8000):
        assert marker in http_get("127.0.0.1", host_port)

    network.cni.delete(pod.netns, pod.id, POD)
    assert f"--dport {host_port} " not in "\n".join(rules("nat"))


def test_del_removes_the_interface_and_frees_the_ip(network: Network, pod: Pod) -> None:
    result = network.cni.add(pod.netns, pod.id, POD, port_mappings=[PortMapping(free_port(), 80)])
    ip = _pod_ip(result)
    host_veths = [i.name for i in result.interfaces if not i.sandbox and i.name != network.bridge]
    assert len(host_veths) == 1
    allocation = network.ipam_dir / network.name / ip
    assert allocation.read_text().startswith(pod.id)
    assert list(network.cni.cache_dir.iterdir())

    network.cni.delete(pod.netns, pod.id, POD)

    assert "eth0" not in in_netns(pod.netns, "ip", "-o", "link")
    assert subprocess.run(["ip", "link", "show", host_veths[0]], capture_output=True).returncode != 0
    assert not allocation.exists()
    assert not list(network.cni.cache_dir.iterdir())
    assert network.name not in "\n".join(rules("nat"))
    assert network.cni.cached_result(pod.id) is None

    network.cni.delete(pod.netns, pod.id, POD)


def test_del_after_the_netns_is_gone_still_frees_the_ip(network: Network, pod: Pod, tmp_path: Path) -> None:
    # The bridge plugin learns which masquerade rules to drop from the addresses inside the netns, so with the
    # netns gone (1.1.1) they stay behind: sandboxes must be torn down with DEL first, unpin second. The IP and
    # the cache entry are released all the same; the network fixture removes the stale rules.
    ip = _pod_ip(network.cni.add(pod.netns, pod.id, POD))
    namespaces.unpin(tmp_path / "state", pod.id)

    network.cni.delete(pod.netns, pod.id, POD)
    network.cni.delete(None, pod.id, POD)

    assert not (network.ipam_dir / network.name / ip).exists()
    assert network.cni.cached_result(pod.id) is None


def test_ips_are_distinct_per_pod_and_reused_after_del(network: Network, pod: Pod, tmp_path: Path) -> None:
    state = tmp_path / "state"
    other = secrets.token_hex(32)
    other_ns = namespaces.pin(state, other, {"net"}).net
    assert other_ns is not None
    try:
        first = _pod_ip(network.cni.add(pod.netns, pod.id, POD))
        second = _pod_ip(network.cni.add(other_ns, other, POD))
        assert first != second
        network.cni.delete(other_ns, other, POD)
        assert not (network.ipam_dir / network.name / second).exists()
    finally:
        with contextlib.suppress(CrishimError):
            network.cni.delete(other_ns, other, POD)
        namespaces.unpin(state, other)


def test_check_passes_then_notices_a_missing_interface(network: Network, pod: Pod) -> None:
    # Without port mappings: portmap 1.1.1's CHECK also looks for an IPv6 chain an IPv4-only pod never gets.
    network.cni.add(pod.netns, pod.id, POD)
    network.cni.check(pod.netns, pod.id, POD)
    subprocess.run(["nsenter", f"--net={pod.netns}", "--", "ip", "link", "del", "eth0"], check=True)
    with pytest.raises(CrishimError, match="bridge CHECK failed"):
        network.cni.check(pod.netns, pod.id, POD)


def test_plugin_error_is_reported_and_nothing_leaks(network: Network, pod: Pod) -> None:
    conf = conflist(network.name, network.bridge, network.subnet, network.ipam_dir)
    conf["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "not-a-subnet"}]]
    (network.conf_dir / "10-test.conflist").write_text(json.dumps(conf))

    with pytest.raises(CrishimError, match=r"CNI plugin bridge ADD failed.*not-a-subnet"):
        network.cni.add(pod.netns, pod.id, POD)

    assert "eth0" not in in_netns(pod.netns, "ip", "-o", "link")
    assert not network.cni.cache_dir.exists() or not list(network.cni.cache_dir.iterdir())
    assert network.name not in "\n".join(rules("nat"))


def test_missing_plugin_makes_the_network_not_ready(network: Network) -> None:
    conf = conflist(network.name, network.bridge, network.subnet, network.ipam_dir)
    conf["plugins"].append({"type": "no-such-plugin"})
    (network.conf_dir / "10-test.conflist").write_text(json.dumps(conf))
    status = network.cni.status()
    assert not status.ready and 'failed to find plugin "no-such-plugin"' in status.reason


# ---- without root: config loading, status and what a plugin is handed -----------------------------------------


def test_status_without_config_says_why(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    cni = CNI(conf_dir, tmp_path / "cache")
    status = cni.status()
    assert not status.ready
    assert status.reason == f"no network config found in {conf_dir}"
    missing = tmp_path / "missing"
    assert CNI(missing, tmp_path / "cache").status().reason == f"no network config found in {missing}"
    with pytest.raises(FailedPrecondition, match="no network config found"):
        cni.add(tmp_path / "netns", "c1", POD)
    cni.delete(tmp_path / "netns", "c1", POD)  # nothing was set up, so there is nothing to undo


def test_first_config_by_name_and_single_conf_wrapped(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "b",
                                                        "plugins": [{"type": "bridge"}]}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "a", "type": "ptp"}))
    (tmp_path / "00-ignored.txt").write_text("not a config")
    config = load_config_list(tmp_path)
    assert (config.name, config.cni_version, config.source.name) == ("a", "0.4.0", "10-a.conf")
    assert [p["type"] for p in config.plugins] == ["ptp"]
    (tmp_path / "05-list-in-a-conf.conf").write_text(json.dumps({"name": "x", "plugins": [{"type": "bridge"}]}))
    with pytest.raises(FailedPrecondition, match="network type not found"):
        load_config_list(tmp_path)


FAKE_PLUGIN = """#!{python}
import json, os, sys, time
conf = json.load(sys.stdin)
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({{"env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}, "conf": conf}}))
    f.write("\\n")
behaviour = conf.get("behaviour")
if behaviour == "sleep":
    time.sleep(30)
if behaviour == "fail" and os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps({{"cniVersion": "1.0.0", "code": 7, "msg": "bad config", "details": "subnet"}}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {{"cniVersion": "1.0.0", "interfaces": [], "ips": []}}
    n = len(prev["ips"])
    prev["interfaces"].append({{"name": os.environ["CNI_IFNAME"], "sandbox": os.environ["CNI_NETNS"]}})
    prev["ips"].append({{"address": "192.0.2.%d/24" % (n + 10), "gateway": "192.0.2.1", "interface": n}})
    print(json.dumps(prev))
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    if not os.access(sys.executable, os.X_OK):
        pytest.skip(f"{sys.executable} cannot be run by this user as a fake plugin's interpreter")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for name in ("fake-a", "fake-b"):
        (bin_dir / name).write_text(FAKE_PLUGIN.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("CNI_ARGS", "leaked=1")
    return bin_dir, log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _fake_network(tmp_path: Path, plugins: list[dict[str, Any]]) -> Path:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "10-fake.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "fake",
                                                           "plugins": plugins}))
    return conf_dir


def test_plugins_get_kubelet_args_prev_results_and_runtime_config(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    bin_dir, log = fake
    conf_dir = _fake_network(tmp_path, [{"type": "fake-a"},
                                        {"type": "fake-b", "capabilities": {"portMappings": True}}])
    cni = CNI(conf_dir, tmp_path / "cache", [tmp_path / "nowhere", bin_dir])
    result = cni.add(Path("/proc/self/ns/net"), "ctr-1", POD, port_mappings=[PortMapping(8080, 80, "TCP"),
                                                                             PortMapping(0, 81)])
    assert [str(i.address) for i in result.ips] == ["192.0.2.10/24", "192.0.2.11/24"]

    add_a, add_b = _calls(log)
    assert add_a["env"] == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr-1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=ctr-1;"
                    f"K8S_POD_UID={POD.uid}",
        "CNI_PATH": f"{tmp_path / 'nowhere'}:{bin_dir}",
    }
    assert add_a["conf"] == {"type": "fake-a", "name": "fake", "cniVersion": "1.0.0"}
    assert add_b["conf"]["prevResult"]["ips"][0]["address"] == "192.0.2.10/24"
    assert add_b["conf"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}

    # DEL in reverse order, each plugin handed the cached final result, and with the cached runtimeConfig.
    log.unlink()
    cni.delete(Path("/nonexistent/netns"), "ctr-1", POD)
    del_b, del_a = _calls(log)
    assert (del_b["conf"]["type"], del_a["conf"]["type"]) == ("fake-b", "fake-a")
    assert del_b["env"]["CNI_COMMAND"] == "DEL" and del_b["env"]["CNI_NETNS"] == ""
    assert del_a["conf"]["prevResult"] == json.loads(result.raw)
    assert del_b["conf"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert not list((tmp_path / "cache").iterdir())


def test_plugin_error_code_becomes_errdefs_and_add_is_rolled_back(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    bin_dir, log = fake
    conf_dir = _fake_network(tmp_path, [{"type": "fake-a"}, {"type": "fake-b", "behaviour": "fail"}])
    cni = CNI(conf_dir, tmp_path / "cache", [bin_dir])
    with pytest.raises(FailedPrecondition, match=r"CNI plugin fake-b ADD failed \(code 7\): bad config: subnet"):
        cni.add(Path("/proc/self/ns/net"), "ctr-2", POD)
    assert [(c["env"]["CNI_COMMAND"], c["conf"]["type"]) for c in _calls(log)] == [
        ("ADD", "fake-a"), ("ADD", "fake-b"), ("DEL", "fake-b"), ("DEL", "fake-a")]
    assert cni.cached_result("ctr-2") is None


def test_a_hanging_plugin_times_out(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    bin_dir, _ = fake
    conf_dir = _fake_network(tmp_path, [{"type": "fake-a", "behaviour": "sleep"}])
    cni = CNI(conf_dir, tmp_path / "cache", [bin_dir], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="fake-a ADD did not finish"):
        cni.add(Path("/proc/self/ns/net"), "ctr-3", POD)
    assert time.monotonic() - started < 10


def test_shipped_config_loads_and_is_ready_with_the_debian_plugins(tmp_path: Path) -> None:
    shipped = SHIPPED_CONFLIST.parent
    config = load_config_list(shipped)
    assert (config.name, config.cni_version) == ("crishim", "1.0.0")
    assert [p["type"] for p in config.plugins] == ["bridge", "portmap", "loopback"]
    assert config.plugins[0]["bridge"] == "crishim0" and config.plugins[0]["ipam"]["type"] == "host-local"
    if all((PLUGIN_DIR / p).exists() for p in PLUGINS):
        assert CNI(shipped, tmp_path / "cache", [PLUGIN_DIR]).status().ready
