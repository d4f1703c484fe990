"""Fields kubelet reads, compared with containerd 1.6 running the same pods and containers on the same network:
the node's hostname for a pod without one, a pod without a log directory, a stopped pod's IP, a
container's resources (as created and after an update), and the user its process runs as.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from typing import Any

from cri.api.runtime.v1 import api_pb2
from tests.support.containerd_pods import OracleCri
from tests.support.cri_env import CriEnv

RESOURCES = {"cpu_shares": 512, "cpu_quota": 50000, "cpu_period": 100000, "memory_limit_in_bytes": 64 << 20,
             "cpuset_cpus": "0", "cpuset_mems": "0", "oom_score_adj": 500}


def test_a_pod_without_a_hostname_gets_the_nodes(cri: CriEnv, containerd_pods: OracleCri) -> None:
    node = socket.gethostname()
    seen = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        container_id = runtime.run(runtime.runp(runtime.pod()), runtime.container("named"))
        seen[name] = [_text(runtime.exec(container_id, *cmd)) for cmd in (
            ("cat", "/etc/hostname"), ("busybox", "hostname"), ("sh", "-c", "echo $HOSTNAME"))]
    assert seen["crishim"] == seen["containerd"] == [node, node, node]


def test_a_pod_without_a_log_directory_runs_containers_without_a_log(cri: CriEnv,
                                                                      containerd_pods: OracleCri) -> None:
    seen = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        config = runtime.pod()
        del config["log_directory"]  # a misspelled field arrives as no field at all
        container_id = runtime.run(runtime.runp(config), runtime.container("quiet"))
        status = runtime.status(container_id)
        seen[name] = (status["state"], status["logPath"])
    assert seen["crishim"] == seen["containerd"] == ("CONTAINER_RUNNING", "")
    # Nothing to reopen, and nothing of the host's is touched trying.
    (container_id,) = cri.crictl("ps", "-q").stdout.split()
    cri.rpc("ReopenContainerLog", api_pb2.ReopenContainerLogRequest(container_id=container_id))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_stopped_pod_reports_no_ip(cri: CriEnv, containerd_pods: OracleCri) -> None:
    seen = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        pod_id = runtime.runp(runtime.pod())
        assert ipaddress.ip_address(runtime.inspectp(pod_id)["status"]["network"]["ip"]) in cri.network.subnet
        runtime.crictl("stopp", pod_id)
        seen[name] = runtime.inspectp(pod_id)["status"]["network"]
    assert seen["crishim"] == seen["containerd"] == {"additionalIps": [], "ip": ""}


def test_container_resources_as_created_and_updated(cri: CriEnv, containerd_pods: OracleCri) -> None:
    seen: dict[str, list[Any]] = {}
    for name, runtime in (("crishim", cri), ("containerd", containerd_pods)):
        pod_id = runtime.runp(runtime.pod())
        limited = runtime.run(pod_id, runtime.container("limited", resources=RESOURCES))
        plain = runtime.run(pod_id, runtime.container("plain"))
        before = runtime.status(limited)["resources"]
        runtime.crictl("update", "--cpu-share", "256", "--memory", str(128 << 20), limited)
        seen[name] = [before, runtime.status(limited)["resources"], runtime.status(plain)["resources"]]
    assert seen["crishim"] == seen["containerd"]
    assert seen["crishim"][0]["linux"]["memoryLimitInBytes"] == str(64 << 20)
    assert seen["crishim"][1]["linux"]["cpuShares"] == "256"


def test_the_user_is_the_one_the_process_runs_as(cri: CriEnv) -> None:
    pod_id = cri.runp()
    security = {"run_as_user": {"value": 1000}, "run_as_group": {"value": 1000}, "supplemental_groups": [4242]}
    container_id = cri.run(pod_id, cri.container("someone", security_context=security))
    user = cri.status(container_id)["user"]["linux"]
    ids = [_text(cri.exec(container_id, "id", flag)) for flag in ("-u", "-g", "-G")]
    assert [user["uid"], user["gid"]] == ids[:2] == ["1000", "1000"]
    assert sorted(int(g) for g in user["supplementalGroups"]) == sorted(int(g) for g in ids[2].split()) == [
        1000, 4242]
    # The image's own user, for a container that names none.
    root = cri.run(pod_id, cri.container("default"))
    assert cri.status(root)["user"]["linux"] == {"uid": "0", "gid": "0", "supplementalGroups": ["0"]}


def _text(output: Any) -> str:
    text = output if isinstance(output, str) else output.stdout
    return str(text).strip()
