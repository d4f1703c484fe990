"""deploy/crishim.service under a real systemd: a node container booted from the kind node image, as kind
boots one, without a cluster. Containers are supervised by conmon, so restarting or stopping the daemon
through systemd must leave them running."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.support.kind_cluster import SystemdNode, systemd_node
from tests.support.procs import run

REPO = Path(__file__).resolve().parents[2]


def unit(node: SystemdNode, prop: str) -> str:
    return node.sh(f"systemctl show crishim --value -p {prop}").stdout.strip()


def container(node: SystemdNode, container_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(node.sh(f"crictl inspect {container_id}").stdout)
    return found


def test_restart_and_stop_leave_running_containers_alone(docker_env: dict[str, str], node_image: str) -> None:
    demo = run(sys.executable, REPO / "script" / "demo-image").stdout.split(":", 1)[0]
    with systemd_node(docker_env, node_image, "crishim-systemd-test") as node:
        # Type=notify: systemd calls the unit active only once the daemon said its socket serves.
        assert unit(node, "ActiveState") == "active"
        assert node.sh("test -S /run/crishim/crishim.sock && crictl version").stdout.count("crishim") >= 1
        node.copy_in(Path(demo), "/root/demo.tar")
        node.copy_in(REPO / "deploy" / "examples", "/root/examples")
        node.sh("mkdir -p /etc/cni/net.d")
        node.copy_in(REPO / "deploy" / "cni" / "10-crishim-bridge.conflist", "/etc/cni/net.d/")
        node.sh("crishim image import /root/demo.tar")
        pod, ctr = node.sh("cd /root/examples && p=$(crictl runp pod.json) && "
                           "c=$(crictl create $p container.json pod.json) && crictl start $c >/dev/null && "
                           "echo $p $c").stdout.split()
        pid = container(node, ctr)["info"]["pid"]
        daemon_pid = unit(node, "MainPID")

        node.sh("systemctl restart crishim")
        assert unit(node, "ActiveState") == "active"
        assert unit(node, "MainPID") != daemon_pid
        status = container(node, ctr)
        assert status["status"]["state"] == "CONTAINER_RUNNING"
        assert status["info"]["pid"] == pid

        node.sh("systemctl stop crishim")
        assert unit(node, "ActiveState") == "inactive"
        assert node.sh("test ! -e /run/crishim/crishim.sock").returncode == 0
        node.sh(f"kill -0 {pid}")  # KillMode=process: only the daemon went

        node.sh("systemctl start crishim")
        assert container(node, ctr)["status"]["state"] == "CONTAINER_RUNNING"
        node.sh(f"crictl rmp -f {pod}")
        assert node.sh(f"kill -0 {pid}", check=False).returncode != 0
