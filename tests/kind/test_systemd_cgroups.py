"""The systemd cgroup driver under a real systemd: a node container booted from the kind node image, crishim's
unit restarted with ``cgroup_driver = "systemd"``. A pod in the slice kubelet names for it gets each container
as a systemd scope there, with runc and with crun, with its limits as the scope's; stats are read from those
cgroups; an update goes through systemd; removal leaves no unit and no cgroup behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.support.kind_cluster import SystemdNode, systemd_node
from tests.support.procs import run, wait_until

REPO = Path(__file__).resolve().parents[2]
LIMIT, RAISED = 64 << 20, 96 << 20
RUNTIME_CONFIG = ("import grpc; from cri.api.runtime.v1 import api_pb2 as p, api_pb2_grpc as g; "
                  "c = grpc.insecure_channel('unix:///run/crishim/crishim.sock'); "
                  "print(p.CgroupDriver.Name(g.RuntimeServiceStub(c).RuntimeConfig(p.RuntimeConfigRequest())"
                  ".linux.cgroup_driver))")


def _json(node: SystemdNode, script: str) -> Any:
    return json.loads(node.sh(script).stdout)


def _scope(node: SystemdNode, container_id: str, *props: str) -> dict[str, str]:
    out = node.sh(f"systemctl show cri-containerd-{container_id}.scope " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def _memory_limit(node: SystemdNode, pid: int) -> int:
    """The limit in the container's memory cgroup, wherever this node's cgroup version keeps it."""
    lines = node.sh(f"cat /proc/{pid}/cgroup").stdout.splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if line.split(":", 2)[1] == "memory"]
    path = f"/sys/fs/cgroup/memory{v1[0]}/memory.limit_in_bytes" if v1 else \
        f"/sys/fs/cgroup{lines[0].split(':', 2)[2]}/memory.max"
    return int(node.sh(f"cat {path}").stdout)


def pod_slice(uid: str) -> tuple[str, str]:
    """The slice kubelet's systemd driver names for a Burstable pod (dashes of the uid escaped), and the cgroup
    parent it passes: that slice spelled out through the slices it nests in."""
    name = f"kubepods-burstable-pod{uid.replace('-', '_')}.slice"
    return name, f"/kubepods.slice/kubepods-burstable.slice/{name}"


def _configs(node: SystemdNode, cgroup_parent: str, name: str) -> None:
    pod = {"metadata": {"name": name, "namespace": "default", "uid": f"{name}-5b1c-4f3e", "attempt": 0},
           "log_directory": f"/tmp/{name}",
           "linux": {"cgroup_parent": cgroup_parent, "security_context": {"namespace_options": {"network": 2}}}}
    container = {"metadata": {"name": "app"}, "image": {"image": "localhost/crishim-demo:1"},
                 "command": ["sh", "-c", "echo up; exec sleep 100000"], "log_path": "app.log",
                 "linux": {"resources": {"memory_limit_in_bytes": LIMIT}}}
    node.sh(f"mkdir -p /root/{name} && cat > /root/{name}/pod.json <<'EOF'\n{json.dumps(pod)}\nEOF\n"
            f"cat > /root/{name}/container.json <<'EOF'\n{json.dumps(container)}\nEOF")


def test_containers_are_systemd_scopes_in_the_pods_slice(docker_env: dict[str, str], node_image: str) -> None:
    demo = run(sys.executable, REPO / "script" / "demo-image").stdout.split(":", 1)[0]
    with systemd_node(docker_env, node_image, "crishim-systemd-cgroups") as node:
        node.sh("sed -i 's/^cgroup_driver = .*/cgroup_driver = \"systemd\"/' /etc/crishim/config.toml && "
                "grep -qx 'cgroup_driver = \"systemd\"' /etc/crishim/config.toml && systemctl restart crishim")
        assert node.sh(f"/opt/crishim/venv/bin/python -c \"{RUNTIME_CONFIG}\"").stdout.strip() == "SYSTEMD"
        node.copy_in(Path(demo), "/root/demo.tar")
        node.sh("crishim image import /root/demo.tar")

        for handler in ("runc", "crun"):
            _check_scoped_pod(node, handler)

        # A parent that is no slice cannot be a systemd pod's.
        _configs(node, "/kubepods/burstable/pod-not-a-slice", "flat")
        refused = node.sh("crictl runp /root/flat/pod.json", check=False)
        assert refused.returncode != 0 and "not a systemd slice" in refused.stderr


def _check_scoped_pod(node: SystemdNode, handler: str) -> None:
    name = f"sliced-{handler}"
    slice_name, parent = pod_slice(f"{name}-5b1c-4f3e")
    _configs(node, parent, name)
    pod = node.sh(f"crictl runp --runtime {handler} /root/{name}/pod.json").stdout.strip()
    ctr = node.sh(f"crictl create {pod} /root/{name}/container.json /root/{name}/pod.json").stdout.strip()
    node.sh(f"crictl start {ctr}")
    pid = int(_json(node, f"crictl inspect {ctr}")["info"]["pid"])

    scope = _scope(node, ctr, "ActiveState", "Slice", "ControlGroup")
    assert scope["ActiveState"] == "active", (handler, scope)
    assert scope["Slice"] == slice_name
    assert scope["ControlGroup"] == f"{parent}/cri-containerd-{ctr}.scope"
    assert f"{parent}/cri-containerd-{ctr}.scope" in node.sh(f"cat /proc/{pid}/cgroup").stdout
    assert _memory_limit(node, pid) == LIMIT

    # Stats come from those cgroups: the container's scope and the pod's slice.
    node.sh(f"crictl exec {ctr} sh -c 'head -c 8388608 /dev/zero > /dev/shm/fill'")
    (stats,) = _json(node, f"crictl stats -o json {ctr}")["stats"]
    assert int(stats["memory"]["workingSetBytes"]["value"]) > 0
    assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    (pod_stats,) = _json(node, f"crictl statsp -o json {pod}")["stats"]
    assert int(pod_stats["linux"]["memory"]["usageBytes"]["value"]) >= 8 << 20  # the slice holds the shm file
    assert int(pod_stats["linux"]["process"]["processCount"]["value"]) >= 1

    # An update reaches the cgroup through systemd.
    node.sh(f"crictl update --memory {RAISED} {ctr}")
    assert _memory_limit(node, pid) == RAISED

    node.sh(f"crictl rmp -f {pod}")
    wait_until(lambda: _scope(node, ctr, "LoadState")["LoadState"] == "not-found", timeout=30,
               what=f"the {handler} container's scope to go", interval=0.5)
    assert node.sh(f"find /sys/fs/cgroup -name 'cri-containerd-{ctr}.scope'").stdout == ""
