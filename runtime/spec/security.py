"""What the security context asks of the kernel beyond the process: seccomp, masked and read-only paths, and
the pod's sysctls (only those a namespace of the container's own isolates)."""

from __future__ import annotations

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime import seccomp
from runtime.spec import options as o
from runtime.spec.host import HostFacts
from runtime.spec.inputs import SpecInputs
from runtime.spec.options import SpecOpt

__all__ = ["security_options"]

# The deprecated seccomp_profile_path strings (still sent by old clients).
SECCOMP_RUNTIME_DEFAULT = ("runtime/default", "docker/default", "")
SECCOMP_UNCONFINED = "unconfined"
LOCALHOST_PREFIX = "localhost/"
# Sysctls runc accepts because a namespace isolates them (its own table); anything else would change the host.
IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
    "kernel.shmmni", "kernel.shm_rmid_forced",
})


def security_options(inputs: SpecInputs, caps: list[str]) -> list[SpecOpt]:
    sc = inputs.security_context
    options: list[SpecOpt] = []
    if not inputs.privileged:
        if sc.masked_paths:
            options.append(o.with_masked_paths(list(sc.masked_paths)))
        if sc.readonly_paths:
            options.append(o.with_readonly_paths(list(sc.readonly_paths)))
    sysctls = _sysctls(inputs)
    if sysctls:
        options.append(o.with_sysctls(sysctls))
    profile = _seccomp(sc, caps, inputs.host)
    if profile is not None:
        options.append(o.with_seccomp(profile))
    return options


def _sysctls(inputs: SpecInputs) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(inputs.sandbox_config.linux.sysctls.items()):
        if key.startswith("net."):
            isolated = not inputs.host_network
        elif key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            isolated = not inputs.host_ipc
        elif key == "kernel.domainname":
            isolated = not inputs.host_network
        elif key == "kernel.hostname":
            raise errdefs.InvalidArgument("sysctl 'kernel.hostname' is not allowed: the pod's hostname sets it")
        else:
            raise errdefs.InvalidArgument(f"sysctl {key!r} is not namespaced: setting it would change the host")
        # In a namespace shared with the host, the sysctl would change the host's value.
        if isolated:
            out[key] = value
    return out


def _seccomp(sc: api_pb2.LinuxContainerSecurityContext, caps: list[str], host: HostFacts) -> dict[str, object] | None:
    if sc.privileged:
        return None
    profile = sc.seccomp if sc.HasField("seccomp") else _legacy_seccomp(sc.seccomp_profile_path)
    if profile is None:
        return None
    kinds = api_pb2.SecurityProfile.ProfileType
    if profile.profile_type != kinds.Value("Localhost") and profile.localhost_ref:
        raise errdefs.InvalidArgument("seccomp localhost_ref must only be set when profile_type is Localhost")
    if profile.profile_type == kinds.Value("Unconfined"):
        return None
    if profile.profile_type == kinds.Value("RuntimeDefault"):
        return seccomp.default_profile(caps, host.machine, host.kernel)
    if profile.profile_type == kinds.Value("Localhost"):
        return seccomp.load_profile(profile.localhost_ref.removeprefix(LOCALHOST_PREFIX))
    raise errdefs.InvalidArgument(f"unknown seccomp profile type {profile.profile_type}")


def _legacy_seccomp(path: str) -> api_pb2.SecurityProfile | None:
    if not path:
        return None
    if path in SECCOMP_RUNTIME_DEFAULT:
        return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault)
    if path == SECCOMP_UNCONFINED:
        return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined)
    if not path.startswith(LOCALHOST_PREFIX):
        raise errdefs.InvalidArgument(f"invalid seccomp profile {path!r}")
    return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Localhost,
                                   localhost_ref=path[len(LOCALHOST_PREFIX):])
