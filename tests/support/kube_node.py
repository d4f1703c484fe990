"""A Kubernetes node for the tests: crishim on a throw-away CNI network, and a real kubelet on its socket.

The node IP is the gateway address of the test's bridge (kubelet refuses loopback), so the bridge is made and
given that address before kubelet starts; the CNI bridge plugin finds it as it would have made it. On exit
kubelet stops, every pod is removed through crishim and checked for leftovers (tests/support/cri_env.py),
the network goes, then the cgroups kubelet made; a host tunable or KUBE-* iptables rule that changed fails
the test.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cni_network import Network
from tests.support.cri_env import CriEnv, cri_environment
from tests.support.daemon import Crishim
from tests.support.images import PushedImage
from tests.support.kube_build import KubeBinaries
from tests.support.kube_control_plane import ControlPlane, Kubectl, control_plane
from tests.support.kube_host import (
    FIXED_KUBELET_DIR,
    cgroup_root,
    fixed_dir_mountpoint,
    kube_iptables_rules,
    sysctl_shadow,
)
from tests.support.kubelet import Kubelet, KubeletSettings, running_kubelet
from tests.support.procs import run
from tests.support.registry import Registry

__all__ = ["KubeNode", "kube_node"]


@dataclass
class KubeNode:
    name: str
    env: CriEnv
    kubelet: Kubelet
    control_plane: ControlPlane | None = None

    @property
    def kubectl(self) -> Kubectl:
        assert self.control_plane is not None, "a standalone node has no API server"
        return self.control_plane.kubectl

    @property
    def crishim(self) -> Crishim:
        return self.env.daemon

    @property
    def network(self) -> Network:
        return self.env.network

    @property
    def ip(self) -> str:
        return str(self.network.gateway)


def _bridge_with_gateway(network: Network) -> None:
    run("ip", "link", "add", "name", network.bridge, "type", "bridge")
    run("ip", "addr", "add", f"{network.gateway}/{network.subnet.prefixlen}", "dev", network.bridge)
    run("ip", "link", "set", network.bridge, "up")


@contextlib.contextmanager
def kube_node(workdir: Path, registry: Registry, image: PushedImage, binaries: KubeBinaries, *,
              with_control_plane: bool = False, kubelet_overrides: dict[str, Any] | None = None,
              kubelet_verbosity: int = 2) -> Iterator[KubeNode]:
    """A node; with_control_plane adds etcd and kube-apiserver (advertising the node IP) that kubelet
    registers with. kubelet_overrides are KubeletConfiguration fields kubelet starts with."""
    name = f"crishim-e2e-{secrets.token_hex(3)}"
    iptables_before = kube_iptables_rules()
    fixed_dir_before = _listing(FIXED_KUBELET_DIR)
    shadow = sysctl_shadow(workdir / "sysctl")
    with contextlib.ExitStack() as stack:
        stack.enter_context(fixed_dir_mountpoint())
        cgroups = stack.enter_context(cgroup_root(name))
        env = stack.enter_context(cri_environment(workdir / "cri", registry, image))
        _bridge_with_gateway(env.network)
        plane = None
        if with_control_plane:
            plane = stack.enter_context(control_plane(workdir / "control-plane", binaries.kube_apiserver,
                                                      binaries.kubectl, str(env.network.gateway)))
        settings = KubeletSettings(binaries.kubelet, name, str(env.network.gateway), env.daemon.socket, cgroups,
                                   plane.kubeconfig if plane else None, kubelet_overrides or {}, kubelet_verbosity)
        kubelet = stack.enter_context(running_kubelet(settings, workdir / "kubelet", shadow))
        yield KubeNode(name, env, kubelet, plane)
    changed = {t: (before, now) for t, now in shadow.host_now().items() if (before := shadow.host_values[t]) != now}
    assert not changed, f"kubelet changed host tunables (before, after): {changed}"
    assert kube_iptables_rules() == iptables_before, "kubelet changed the host's KUBE-* iptables rules"
    assert _listing(FIXED_KUBELET_DIR) == fixed_dir_before, f"kubelet changed the host's {FIXED_KUBELET_DIR}"


def _listing(folder: Path) -> list[str] | None:
    """What is in folder, recursively; None when it does not exist."""
    if not folder.exists():
        return None
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
