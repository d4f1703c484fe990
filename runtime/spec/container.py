"""A CRI container's spec, as containerd 1.6's CRI plugin builds it: the default spec and the options the
request, its pod and its image call for, in containerd's order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import errdefs
from runtime import lsm
from runtime.cgroups import cgroups_path
from runtime.spec import options as o
from runtime.spec.devices import cri_devices, host_devices
from runtime.spec.inputs import SpecInputs
from runtime.spec.mounts import mount_options
from runtime.spec.namespaces import namespace_options
from runtime.spec.options import SpecOpt
from runtime.spec.process import capabilities, process_options
from runtime.spec.resources import container_resources
from runtime.spec.security import security_options

__all__ = ["container_options", "container_spec"]


def container_spec(inputs: SpecInputs, edits: Iterable[SpecOpt] = ()) -> dict[str, Any]:
    """The OCI runtime spec (config.json) for the container, with ``edits`` (its CDI devices') applied last, as
    containerd applies them; errdefs.InvalidArgument when the request cannot be honoured."""
    return o.build([*container_options(inputs), *edits]).to_json()


def container_options(inputs: SpecInputs) -> list[SpecOpt]:
    """Each is decided here, in order, so the first part of the request that cannot be honoured is the one
    refused; the mounts come last, because deciding them makes missing bind-mount sources."""
    sc = inputs.security_context
    lsm.check_selinux(sc.selinux_options, "the container")
    if inputs.privileged and not inputs.sandbox_config.linux.security_context.privileged:
        raise errdefs.InvalidArgument("no privileged container allowed in sandbox: the pod is not privileged")
    caps = capabilities(sc, inputs.host.capabilities)
    options = [o.with_root_path(inputs.rootfs), *process_options(inputs, caps)]
    devices, rules = cri_devices(inputs.config)
    if inputs.privileged:
        devices += host_devices()
    options += [
        o.with_resources(container_resources(inputs.resources, inputs.host, rules, inputs.privileged)),
        o.with_cgroups_path(cgroups_path(inputs.cgroup_driver, _cgroup_parent(inputs), inputs.container_id,
                                         inputs.namespace)),
        *namespace_options(inputs),
        o.with_devices(devices),
        *security_options(inputs, caps),
        o.with_annotations(_annotations(inputs)),
        *mount_options(inputs),
    ]
    if sc.readonly_rootfs:
        options.append(o.with_readonly_rootfs)
    return options


def _cgroup_parent(inputs: SpecInputs) -> str:
    if inputs.cgroup_parent is not None:
        return inputs.cgroup_parent
    return str(inputs.sandbox_config.linux.cgroup_parent)


def _annotations(inputs: SpecInputs) -> dict[str, str]:
    pod = inputs.sandbox_config.metadata
    return {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": inputs.sandbox_id,
        "io.kubernetes.cri.sandbox-namespace": pod.namespace,
        "io.kubernetes.cri.sandbox-uid": pod.uid,
        "io.kubernetes.cri.sandbox-name": pod.name,
        "io.kubernetes.cri.container-name": inputs.config.metadata.name,
        "io.kubernetes.cri.image-name": inputs.image_name or inputs.config.image.image,
    }
