"""Status as kubelet and critest read it: the runtime handlers and their features, and that every feature
reported false is refused when asked for instead of being silently left out.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2
from tests.support.cri_configs import NODE, POD
from tests.support.cri_env import CriEnv


def test_status_lists_the_handlers_and_their_features(cri: CriEnv) -> None:
    response = cri.rpc("Status", api_pb2.StatusRequest())
    handlers = {h.name: (h.features.recursive_read_only_mounts, h.features.user_namespaces)
                for h in response.runtime_handlers}
    # "" is the default handler, runc; Debian's crun is the other. This kernel has mount_setattr and
    # idmapped mounts, so both make recursive read-only mounts and run pods in user namespaces.
    assert handlers == {"": (True, True), "runc": (True, True), "crun": (True, True)}
    assert response.HasField("features")
    assert (response.features.supplemental_groups_policy, response.features.user_namespaces_host_network) == (
        True, False)
    # crictl info shows the same to a person.
    info = cri.json("info")
    assert sorted(h.get("name", "") for h in info["runtimeHandlers"]) == ["", "crun", "runc"]


def test_each_handler_runs_pods_and_an_unknown_one_is_not_found(cri: CriEnv) -> None:
    names = [h.name for h in cri.rpc("Status", api_pb2.StatusRequest()).runtime_handlers]
    for name in names:
        pod_id = cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(
            config=_pod(cri, f"handler-{name or 'default'}"), runtime_handler=name)).pod_sandbox_id
        assert cri.inspectp(pod_id)["status"]["state"] == "SANDBOX_READY"
    with pytest.raises(grpc.RpcError) as caught:
        cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=_pod(cri, "handler-x"), runtime_handler="kata"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_user_namespace_with_the_node_network_is_refused_as_status_reports(cri: CriEnv) -> None:
    before = cri.inventory()
    config = _pod(cri, "userns")
    userns = config.linux.security_context.namespace_options.userns_options
    userns.mode = POD
    for ids in (userns.uids, userns.gids):
        ids.add(container_id=0, host_id=300000, length=65536)
    config.linux.security_context.namespace_options.network = NODE
    with pytest.raises(grpc.RpcError) as caught:
        cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "user namespace cannot share the node's network" in str(caught.value.details())
    assert cri.inventory() == before
    # Saying "the node's user namespace", as kubelet does for every pod, is fine.
    userns.mode = NODE
    assert cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id


@pytest.mark.parametrize("policy", ["Merge", "Strict"])
def test_the_reported_user_is_the_one_the_process_runs_as(cri: CriEnv, policy: str) -> None:
    pod_id = cri.runp()
    security = {"run_as_user": {"value": 1000}, "run_as_group": {"value": 3000}, "supplemental_groups": [4242],
                "supplemental_groups_policy": api_pb2.SupplementalGroupsPolicy.Value(policy)}
    container_id = cri.run(pod_id, cri.container("groups", security_context=security))
    # The image's /etc/group lists user 1000 in no group, so both policies give the same ids here; what
    # Strict leaves out of them is in tests/unit/test_user.py and critest's SupplementalGroupsPolicy specs.
    assert cri.exec(container_id, "busybox", "id", "-G").stdout.split() == ["3000", "4242"]
    status = cri.rpc("ContainerStatus", api_pb2.ContainerStatusRequest(container_id=container_id)).status
    linux = status.user.linux
    assert (linux.uid, linux.gid, list(linux.supplemental_groups)) == (1000, 3000, [3000, 4242])
    # From the host: the kernel's view of the container's process.
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{cri.container_pid(container_id)}/status")
                  .read_text().splitlines())
    assert fields["Uid"].split()[:2] == ["1000", "1000"] and fields["Gid"].split()[:2] == ["3000", "3000"]
    assert fields["Groups"].split() == ["3000", "4242"]


def _pod(cri: CriEnv, name: str) -> api_pb2.PodSandboxConfig:
    config = cri.pod(name)
    pod = api_pb2.PodSandboxConfig(log_directory=config["log_directory"])
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = (
        name, config["metadata"]["namespace"], config["metadata"]["uid"])
    return pod
