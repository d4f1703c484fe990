"""Status as kubelet and critest read it: the runtime handlers and their features, and that every feature
reported false is refused when asked for instead of being silently left out.
"""

from __future__ import annotations

import grpc
import pytest

from cri.api.runtime.v1 import api_pb2
from tests.integration.test_bad_requests import refused
from tests.support.cri_configs import NODE, POD
from tests.support.cri_env import CriEnv


def test_status_lists_the_handlers_and_their_features(cri: CriEnv) -> None:
    response = cri.rpc("Status", api_pb2.StatusRequest())
    handlers = {h.name: (h.features.recursive_read_only_mounts, h.features.user_namespaces)
                for h in response.runtime_handlers}
    # "" is the default handler, runc; Debian's crun is the other. This kernel has mount_setattr, so both
    # make recursive read-only mounts; neither runs pods in user namespaces.
    assert handlers == {"": (True, False), "runc": (True, False), "crun": (True, False)}
    assert response.HasField("features")
    assert (response.features.supplemental_groups_policy, response.features.user_namespaces_host_network) == (
        False, False)
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


def test_a_user_namespace_is_refused_as_status_reports(cri: CriEnv) -> None:
    before = cri.inventory()
    config = _pod(cri, "userns")
    config.linux.security_context.namespace_options.userns_options.mode = POD
    with pytest.raises(grpc.RpcError) as caught:
        cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "user namespaces" in str(caught.value.details())
    assert cri.inventory() == before
    # Saying "the node's user namespace", as kubelet does for every pod, is fine.
    config.linux.security_context.namespace_options.userns_options.mode = NODE
    assert cri.rpc("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id


def test_strict_supplemental_groups_are_refused_as_status_reports(cri: CriEnv) -> None:
    pod_id = cri.runp()
    before = cri.inventory()
    strict = cri.container("strict", security_context={"supplemental_groups_policy": 1})  # Strict
    message = refused(cri.create(pod_id, strict, check=False), "InvalidArgument")
    assert "Strict" in message
    assert cri.inventory() == before


def _pod(cri: CriEnv, name: str) -> api_pb2.PodSandboxConfig:
    config = cri.pod(name)
    pod = api_pb2.PodSandboxConfig(log_directory=config["log_directory"])
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = (
        name, config["metadata"]["namespace"], config["metadata"]["uid"])
    return pod
