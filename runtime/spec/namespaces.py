"""The container's namespaces: the pod's, joined by path (there is no pause process to join through), its own
mount namespace, and a user namespace with the pod's id mappings when the pod has one."""

from __future__ import annotations

from pathlib import Path

import errdefs
from runtime.spec import options as o
from runtime.spec.inputs import CONTAINER, NODE, TARGET, SpecInputs
from runtime.spec.model import IDMapping, Namespace
from runtime.spec.options import SpecOpt
from runtime.userns import IDMap, pod_mapping

__all__ = ["namespace_options"]


def namespace_options(inputs: SpecInputs) -> list[SpecOpt]:
    namespaces = _namespaces(inputs)
    mapping = pod_mapping(inputs.pod_namespace_options)
    if mapping is None:
        return [o.with_namespaces(namespaces)]
    user = _joined("user", inputs.namespaces.user, "pod's user")
    return [o.with_namespaces([user, *namespaces]),
            o.with_id_mappings(_id_mapping(mapping.uids), _id_mapping(mapping.gids))]


def _namespaces(inputs: SpecInputs) -> list[Namespace]:
    paths = inputs.namespaces
    namespaces: list[Namespace] = []
    pid = _pid_namespace(inputs)
    if pid is not None:
        namespaces.append(pid)
    if not inputs.host_ipc:
        namespaces.append(_joined("ipc", paths.ipc, "IPC"))
    # A pod on the host network also keeps the host's hostname (UTS).
    if not inputs.host_network:
        namespaces.append(_joined("uts", paths.uts, "UTS"))
    namespaces.append(Namespace("mount"))
    if not inputs.host_network:
        namespaces.append(_joined("network", paths.net, "network"))
    # cgroup namespaces hide the host's cgroup tree; containerd uses them only on cgroup v2 and not for
    # privileged containers, which may need that tree.
    if inputs.host.cgroup_v2 and not inputs.privileged:
        namespaces.append(Namespace("cgroup"))
    return namespaces


def _pid_namespace(inputs: SpecInputs) -> Namespace | None:
    mode = inputs.pid_mode
    if mode == CONTAINER:
        return Namespace("pid")
    if mode == NODE:
        return None
    if mode == TARGET:
        return _joined("pid", inputs.target_pid_namespace, "target container's PID")
    return _joined("pid", inputs.namespaces.pid, "pod's shared PID")


def _joined(ns_type: str, path: str | Path | None, what: str) -> Namespace:
    if not path:
        raise errdefs.InvalidArgument(f"the container joins the {what} namespace, but no path to it was given")
    return Namespace(ns_type, str(path))


def _id_mapping(mapping: IDMap) -> IDMapping:
    return IDMapping(mapping.container_id, mapping.host_id, mapping.size)
