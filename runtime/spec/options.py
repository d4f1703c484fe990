"""Spec options, as containerd's ``oci.SpecOpts``: small functions that each set one part of a typed spec.

A container's spec is the default ``Spec`` with its options applied in order (``build``). An option only
writes; deciding what to write (and refusing a request) happens before, where the options are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from runtime.spec.model import Device, DeviceRule, Hook, IDMapping, Mount, Namespace, Resources, Spec, User

__all__ = ["SpecOpt", "build", "with_added_env", "with_annotations", "with_apparmor_profile", "with_capabilities",
           "with_cgroups_path", "with_device_rules", "with_devices", "with_env", "with_hooks", "with_id_mappings",
           "with_masked_paths", "with_mounts", "with_namespaces", "with_no_new_privileges", "with_oom_score_adj",
           "with_process_args", "with_process_cwd", "with_readonly_paths", "with_readonly_rootfs",
           "with_resources", "with_root_path", "with_rootfs_propagation", "with_seccomp", "with_sysctls",
           "with_terminal", "with_user"]

SpecOpt = Callable[[Spec], None]


def build(options: Iterable[SpecOpt]) -> Spec:
    spec = Spec()
    for option in options:
        option(spec)
    return spec


def with_root_path(path: str) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.root.path = path
    return option


def with_readonly_rootfs(spec: Spec) -> None:
    spec.root.readonly = True


def with_process_args(args: list[str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.args = list(args)
    return option


def with_process_cwd(cwd: str) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.cwd = cwd
    return option


def with_env(env: list[str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.env = list(env)
    return option


def with_added_env(env: Iterable[str]) -> SpecOpt:
    """Add variables after those there (a later one of the same name wins in the container)."""
    def option(spec: Spec) -> None:
        spec.process.env += list(env)
    return option


def with_user(user: User) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.user = user
    return option


def with_capabilities(caps: list[str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.capabilities = list(caps)
    return option


def with_terminal(spec: Spec) -> None:
    spec.process.terminal = True


def with_no_new_privileges(spec: Spec) -> None:
    spec.process.no_new_privileges = True


def with_oom_score_adj(adj: int) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.oom_score_adj = adj
    return option


def with_apparmor_profile(profile: str) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.process.apparmor_profile = profile
    return option


def with_mounts(mounts: Iterable[Mount]) -> SpecOpt:
    """Add ``mounts`` after those there (runc mounts them in order)."""
    def option(spec: Spec) -> None:
        spec.mounts += list(mounts)
    return option


def with_rootfs_propagation(mode: str) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.rootfs_propagation = mode
    return option


def with_namespaces(namespaces: Iterable[Namespace]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.namespaces = list(namespaces)
    return option


def with_id_mappings(uids: IDMapping, gids: IDMapping) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.uid_mappings, spec.linux.gid_mappings = [uids], [gids]
    return option


def with_resources(resources: Resources) -> SpecOpt:
    """The container's cgroup settings, its device rules among them."""
    def option(spec: Spec) -> None:
        spec.linux.resources = resources
    return option


def with_devices(devices: Iterable[Device]) -> SpecOpt:
    """Add device nodes to the container (the device cgroup must allow them too)."""
    def option(spec: Spec) -> None:
        spec.linux.devices += list(devices)
    return option


def with_device_rules(rules: Iterable[DeviceRule]) -> SpecOpt:
    """Add rules to the device cgroup's list, after those there (the last that matches decides)."""
    def option(spec: Spec) -> None:
        resources = spec.linux.resources
        resources.devices = [*(resources.devices or []), *rules]
    return option


def with_cgroups_path(path: str) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.cgroups_path = path
    return option


def with_masked_paths(paths: list[str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.masked_paths = list(paths)
    return option


def with_readonly_paths(paths: list[str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.readonly_paths = list(paths)
    return option


def with_sysctls(sysctls: Mapping[str, str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.sysctl = dict(sysctls)
    return option


def with_seccomp(profile: Mapping[str, Any]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.linux.seccomp = profile
    return option


def with_hooks(point: str, hooks: Iterable[Hook]) -> SpecOpt:
    """Add hooks to run at ``point`` of the container's life (createRuntime, poststart...), after those there."""
    def option(spec: Spec) -> None:
        spec.hooks.setdefault(point, []).extend(hooks)
    return option


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    def option(spec: Spec) -> None:
        spec.annotations.update(annotations)
    return option
