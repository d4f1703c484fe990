"""The OCI runtime spec (a bundle's config.json) for a CRI container, as containerd 1.6's CRI plugin builds it.

``container_spec(SpecInputs(...))`` is the one entry point. It reads the host only where containerd does: the
devices named in the request (their major/minor), the mount table (for propagation checks) and missing
bind-mount sources (created as directories). What does not change while the daemon runs (the runtime's
capabilities, cgroup controllers, kernel, LSMs) is ``HostFacts``, probed once at start-up.

Differences from containerd that follow from having no pause container: the pod's namespaces are given as paths
(``PodNamespaces``), a namespace the pod shares with the host is left out of the spec instead of being joined
through the pause process, and the pod's sysctls go into every container's spec (runc applies them inside the
joined namespaces, so applying them again is harmless).
"""

from __future__ import annotations

import os
import platform
import posixpath
import re
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime import lsm, seccomp
from runtime.cgroups import CgroupDriver, cgroups_path
from runtime.features import HandlerFeatures
from runtime.namespaces import PodNamespaces
from runtime.podfiles import PodFiles
from runtime.user import ResolvedUser
from runtime.userns import IDMap, pod_mapping

__all__ = [
    "HostFacts",
    "SpecInputs",
    "capabilities",
    "container_spec",
    "linux_resources",
    "process_args",
]

OCI_VERSION = "1.0.2-dev"  # what runc 1.1 reports as its spec version
DEFAULT_NAMESPACE = "k8s.io"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default set, which containerd kept.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
# Every capability by bit number (kernel 5.9); the bitmaps in /proc/<pid>/status index this list.
KNOWN_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

ETC_HOSTNAME = "/etc/hostname"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
DEV_SHM = "/dev/shm"

# Sysctls runc accepts because a namespace isolates them (its own table); anything else would change the host.
IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
    "kernel.shmmni", "kernel.shm_rmid_forced",
})

# Directories of /dev a privileged container does not get from the host: each has its own mount in the container.
HOST_DEV_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})

POD = api_pb2.NamespaceMode.Value("POD")
CONTAINER = api_pb2.NamespaceMode.Value("CONTAINER")
NODE = api_pb2.NamespaceMode.Value("NODE")
TARGET = api_pb2.NamespaceMode.Value("TARGET")

PROPAGATION = {
    api_pb2.MountPropagation.Value("PROPAGATION_PRIVATE"): "rprivate",
    api_pb2.MountPropagation.Value("PROPAGATION_HOST_TO_CONTAINER"): "rslave",
    api_pb2.MountPropagation.Value("PROPAGATION_BIDIRECTIONAL"): "rshared",
}

# The deprecated seccomp_profile_path strings (still sent by old clients).
SECCOMP_RUNTIME_DEFAULT = ("runtime/default", "docker/default", "")
SECCOMP_UNCONFINED = "unconfined"
LOCALHOST_PREFIX = "localhost/"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")




@dataclass(frozen=True)
class HostFacts:
    """What containerd reads from the host while building a spec; ``probe()`` reads them, once per daemon."""

    capabilities: tuple[str, ...]  # the runtime's effective set: what "ALL" and privileged grant
    hostname: str = "localhost"  # HOSTNAME for containers of a pod without a hostname (host network)
    cgroup_v2: bool = False
    swap_controller: bool = False
    hugetlb_controller: bool = False
    oom_score_adj: int = 0  # the runtime's own: the floor when oom_score_adj is restricted
    machine: str = "x86_64"
    kernel: tuple[int, int] = (5, 10)
    mountinfo: str = "/proc/self/mountinfo"
    lsms: lsm.HostLSMs = lsm.HostLSMs()

    @classmethod
    def probe(cls) -> HostFacts:
        v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        return cls(
            capabilities=_effective_capabilities(),
            hostname=socket.gethostname(),
            cgroup_v2=v2,
            swap_controller=_swap_controller(v2),
            hugetlb_controller=_hugetlb_controller(v2),
            oom_score_adj=_own_oom_score_adj(),
            machine=platform.machine(),
            kernel=seccomp.kernel_version(),
            lsms=lsm.probe(),
        )


@dataclass(frozen=True)
class SpecInputs:
    """Everything a container's spec is built from.

    ``image_config`` is the ``config`` object of the image's config JSON (Env, Cmd, Entrypoint, WorkingDir,
    User...). ``rootfs`` goes into root.path as given (containerd writes "rootfs", relative to the bundle).
    """

    container_id: str
    sandbox_id: str
    config: api_pb2.ContainerConfig
    sandbox_config: api_pb2.PodSandboxConfig
    image_config: Mapping[str, Any]
    rootfs: str
    user: ResolvedUser
    namespaces: PodNamespaces = field(default_factory=PodNamespaces)
    files: PodFiles | None = None  # None: the image's own /etc files and a private /dev/shm
    image_name: str = ""  # the resolved image reference; defaults to the requested one
    cgroup_parent: str | None = None  # defaults to the pod config's linux.cgroup_parent
    hostname: str | None = None  # HOSTNAME env; defaults to the pod's hostname, else the host's
    target_pid_namespace: str | None = None  # for NamespaceMode TARGET: the target container's PID namespace
    restrict_oom_score_adj: bool = False  # never ask for a lower oom_score_adj than the runtime's own
    namespace: str = DEFAULT_NAMESPACE  # containerd namespace, for the default cgroups path
    cgroup_driver: CgroupDriver = CgroupDriver.CGROUPFS  # who makes the container's cgroup: runc or systemd
    host: HostFacts = field(default_factory=lambda: HostFacts(capabilities=DEFAULT_CAPS))
    handler: HandlerFeatures = field(default_factory=HandlerFeatures)  # what the pod's runtime handler can do
    # By container path: the folder crishim made for a CRI mount, bound in place of its host path (an idmapped
    # mount for one with id mappings; the image's mounted view for an image volume).
    bind_sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Bind:
    source: str
    destination: str
    readonly: bool = False
    propagation: int = 0
    recursive_read_only: bool = False


def container_spec(inputs: SpecInputs) -> dict[str, Any]:
    """The OCI runtime spec for the container; errdefs.InvalidArgument when the request cannot be honoured."""
    host = inputs.host
    sc = _security_context(inputs.config)
    lsm.check_selinux(sc.selinux_options, "the container")
    privileged = bool(sc.privileged)
    if privileged and not inputs.sandbox_config.linux.security_context.privileged:
        raise errdefs.InvalidArgument("no privileged container allowed in sandbox: the pod is not privileged")

    caps = capabilities(sc, host.capabilities)
    process = _process(inputs, host, caps)
    linux = _linux(inputs, host, caps, privileged)
    # Last, because it creates missing bind-mount sources: a request refused for another reason leaves no trace.
    mounts, rootfs_propagation = _mounts(inputs, host, privileged)
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation
    root: dict[str, Any] = {"path": inputs.rootfs}
    if sc.readonly_rootfs:
        root["readonly"] = True
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": root,
        "mounts": mounts,
        "annotations": _annotations(inputs),
        "linux": linux,
    }


# --- process ---------------------------------------------------------------------------------------------------


def process_args(config: api_pb2.ContainerConfig, image_config: Mapping[str, Any]) -> list[str]:
    """CRI command replaces the image's Entrypoint, CRI args its Cmd; a CRI command alone drops the image's Cmd."""
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = _strings(image_config, "Cmd")
        entrypoint = _strings(image_config, "Entrypoint")
        # [""] is how docker records a cleared entrypoint: it means none.
        if entrypoint != [""]:
            command = entrypoint
    if not command and not args:
        raise errdefs.InvalidArgument("no command specified: the request and the image give neither command nor args")
    return command + args


def capabilities(sc: api_pb2.LinuxContainerSecurityContext, host_caps: Sequence[str]) -> list[str]:
    """The bounding (= effective = permitted) set: the default set edited by add/drop; privileged gets all."""
    if sc.privileged:
        return list(host_caps)
    caps = list(DEFAULT_CAPS)
    if not sc.HasField("capabilities"):
        return caps
    add, drop = list(sc.capabilities.add_capabilities), list(sc.capabilities.drop_capabilities)
    # "ALL" first, so that individual entries still apply: add ALL + drop CHOWN is everything but CHOWN.
    if any(c.upper() == "ALL" for c in add):
        caps = list(host_caps)
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    for name in (_cap_name(c) for c in add if c.upper() != "ALL"):
        if name not in caps:
            caps.append(name)
    dropped = {_cap_name(c) for c in drop if c.upper() != "ALL"}
    return [c for c in caps if c not in dropped]


def _process(inputs: SpecInputs, host: HostFacts, caps: list[str]) -> dict[str, Any]:
    config = inputs.config
    sc = _security_context(config)
    cwd = config.working_dir or _string(inputs.image_config, "WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise errdefs.InvalidArgument(f"working directory {cwd!r} is not an absolute path")
    user: dict[str, Any] = {"uid": inputs.user.uid, "gid": inputs.user.gid}
    if inputs.user.additional_gids:
        user["additionalGids"] = list(inputs.user.additional_gids)
    process: dict[str, Any] = {
        "user": user,
        "args": process_args(config, inputs.image_config),
        "env": _env(inputs, host),
        "cwd": cwd,
        "capabilities": {key: list(caps) for key in ("bounding", "effective", "permitted") if caps},
    }
    if config.tty:
        process["terminal"] = True
    if sc.no_new_privs:
        process["noNewPrivileges"] = True
    if config.HasField("linux") and config.linux.HasField("resources"):
        adj = int(config.linux.resources.oom_score_adj)
        process["oomScoreAdj"] = max(adj, host.oom_score_adj) if inputs.restrict_oom_score_adj else adj
    profile = lsm.apparmor_profile(_security_context(inputs.config), host.lsms)
    if profile is not None:
        process["apparmorProfile"] = profile
    return process


def _env(inputs: SpecInputs, host: HostFacts) -> list[str]:
    env = [DEFAULT_PATH_ENV]
    if inputs.config.tty:
        env.append("TERM=xterm")
    hostname = inputs.hostname or inputs.sandbox_config.hostname or host.hostname
    env = _replace_or_append(env, [f"HOSTNAME={hostname}"])
    # Image and CRI variables go in one batch, as containerd does: a CRI variable the image also sets is
    # appended after the image's rather than replacing it, and runc lets the later one win.
    wanted = _strings(inputs.image_config, "Env") + [f"{e.key}={e.value}" for e in inputs.config.envs]
    return _replace_or_append(env, wanted)


def _replace_or_append(defaults: list[str], overrides: list[str]) -> list[str]:
    # An override replaces a default of the same name in place; one without "=" unsets that default.
    results = list(defaults)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(defaults)}
    for value in overrides:
        if "=" not in value:
            if value in index:
                results[index[value]] = ""
            continue
        name = value.split("=", 1)[0]
        if name in index:
            results[index[name]] = value
        else:
            results.append(value)
    return [entry for entry in results if entry]


def _cap_name(name: str) -> str:
    upper = name.upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in KNOWN_CAPS:
        raise errdefs.InvalidArgument(f"unknown capability {name!r}")
    return full


# --- mounts ----------------------------------------------------------------------------------------------------


def _mounts(inputs: SpecInputs, host: HostFacts, privileged: bool) -> tuple[list[dict[str, Any]], str | None]:
    requested = [_cri_bind(m, inputs.handler, inputs.bind_sources) for m in inputs.config.mounts]
    taken = {posixpath.normpath(b.destination) for b in requested}
    binds = requested + [b for b in _pod_binds(inputs) if posixpath.normpath(b.destination) not in taken]
    # Fewer path components first, so that /a is mounted before /a/b rather than over it.
    binds.sort(key=lambda b: posixpath.normpath(b.destination).count("/"))

    targets = {posixpath.normpath(b.destination) for b in binds}
    mounts = [
        m for m in _default_mounts(privileged)
        if m["destination"] not in targets and not ("/dev" in targets and m["destination"].startswith("/dev/"))
    ]
    propagation: str | None = None
    for bind in binds:
        mount, propagation = _bind_mount(bind, host, propagation)
        mounts.append(mount)
    return mounts, propagation


def _default_mounts(privileged: bool) -> list[dict[str, Any]]:
    # sysfs and the cgroup tree are read-only unless the container is privileged.
    sys_mode = "rw" if privileged else "ro"
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", sys_mode]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ]


def _mount(destination: str, mount_type: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": mount_type, "source": source, "options": options}


def _cri_bind(mount: api_pb2.Mount, handler: HandlerFeatures, made: Mapping[str, str]) -> _Bind:
    if mount.image.image or mount.image_sub_path:
        return _image_volume(mount, made)
    if mount.recursive_read_only:
        _check_recursive_read_only(mount, handler)
    if not mount.container_path.startswith("/"):
        raise errdefs.InvalidArgument(f"mount container path {mount.container_path!r} is not absolute")
    if not mount.host_path.startswith("/"):
        raise errdefs.InvalidArgument(
            f"mount host path {mount.host_path!r} (for {mount.container_path!r}) is not absolute")
    if len(mount.uidMappings) or len(mount.gidMappings):
        source = made.get(mount.container_path)
        if source is None:
            raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: id-mapped mounts need a pod in its own "
                                          "user namespace")
        return _Bind(source, mount.container_path, bool(mount.readonly), int(mount.propagation))
    return _Bind(mount.host_path, mount.container_path, bool(mount.readonly), int(mount.propagation),
                 bool(mount.recursive_read_only))


def _image_volume(mount: api_pb2.Mount, made: Mapping[str, str]) -> _Bind:
    source = made.get(mount.container_path)
    if not mount.image.image:
        raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: an image sub path needs an image")
    if source is None:
        raise errdefs.InvalidArgument(f"mount {mount.container_path!r}: the image volume was not prepared")
    # Read-only whatever the request says, as in containerd and CRI-O: the view is shared by containers.
    return _Bind(source, mount.container_path, True, int(mount.propagation))


def _check_recursive_read_only(mount: api_pb2.Mount, handler: HandlerFeatures) -> None:
    # containerd's and kubelet's rules: rro is read-only all the way down, which propagation would undo.
    where = f"mount {mount.container_path!r}"
    if not mount.readonly:
        raise errdefs.FailedPrecondition(f"{where}: a recursive read-only mount must be read-only")
    if mount.propagation != api_pb2.MountPropagation.PROPAGATION_PRIVATE:
        raise errdefs.FailedPrecondition(f"{where}: a recursive read-only mount needs private propagation")
    if not handler.recursive_read_only_mounts:
        raise errdefs.FailedPrecondition(
            f"{where}: recursive read-only mounts are not supported by the runtime handler on this host")


def _pod_binds(inputs: SpecInputs) -> list[_Bind]:
    sc = _security_context(inputs.config)
    readonly = bool(sc.readonly_rootfs)
    files = inputs.files
    binds = [] if files is None else [
        _Bind(str(path), dest, readonly)
        for path, dest in ((files.hostname, ETC_HOSTNAME), (files.hosts, ETC_HOSTS), (files.resolv_conf, RESOLV_CONF))
    ]
    # A pod in the host's IPC namespace sees the host's /dev/shm, as its processes would outside a container.
    if _host_ipc(inputs):
        binds.append(_Bind(DEV_SHM, DEV_SHM))
    elif files is not None:
        binds.append(_Bind(str(files.shm), DEV_SHM))
    return binds


def _bind_mount(bind: _Bind, host: HostFacts, rootfs_propagation: str | None) -> tuple[dict[str, Any], str | None]:
    source = _bind_source(bind)
    options = ["rbind"]
    mode = PROPAGATION.get(bind.propagation, "rprivate")
    if mode == "rshared":
        _require_propagation(source, host, ("shared:",), "a shared mount")
        rootfs_propagation = "rshared"
    elif mode == "rslave":
        _require_propagation(source, host, ("shared:", "master:"), "a shared or slave mount")
        if rootfs_propagation not in ("rshared", "rslave"):
            rootfs_propagation = "rslave"
    options.append(mode)
    # Unlike docker, a read-only rootfs does not make the other mounts read-only.
    options.append("ro" if bind.readonly else "rw")
    if bind.recursive_read_only:
        options.append("rro")  # mount_setattr(AT_RECURSIVE) by the runtime: submounts too
    return _mount(bind.destination, "bind", source, options), rootfs_propagation


def _bind_source(bind: _Bind) -> str:
    # containerd creates a missing source as a directory (kubelet relies on it for hostPath volumes), then
    # mounts what symlinks point to, so the mount does not depend on links that may change later.
    try:
        if not os.path.lexists(bind.source):
            os.makedirs(bind.source, mode=0o755, exist_ok=True)
        return os.path.realpath(bind.source, strict=True)
    except OSError as exc:
        raise errdefs.InvalidArgument(
            f"mount source {bind.source!r} for {bind.destination!r} is unusable: {exc.strerror or exc}") from exc


def _require_propagation(source: str, host: HostFacts, tags: tuple[str, ...], what: str) -> None:
    mountpoint, optional = _mount_of(source, host.mountinfo)
    if not any(field.startswith(tags) for field in optional):
        raise errdefs.FailedPrecondition(f"path {source!r} is mounted on {mountpoint!r} but it is not {what}")


def _mount_of(path: str, mountinfo: str) -> tuple[str, list[str]]:
    """The mount point holding ``path`` and its optional fields (shared:N, master:N...) from mountinfo."""
    best: tuple[str, list[str]] = ("/", [])
    best_len = -1
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 7:
                continue
            point = _unescape_mountinfo(fields[4])
            if not _is_under(path, point) or len(point) < best_len:
                continue
            # Of stacked mounts on one point, the last listed is the one on top.
            best, best_len = (point, fields[6:fields.index("-")] if "-" in fields else []), len(point)
    return best


def _unescape_mountinfo(text: str) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def _is_under(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")


# --- linux -----------------------------------------------------------------------------------------------------


def _linux(inputs: SpecInputs, host: HostFacts, caps: list[str], privileged: bool) -> dict[str, Any]:
    sc = _security_context(inputs.config)
    devices, rules = _cri_devices(inputs.config)
    if privileged:
        devices += _host_devices()
    linux: dict[str, Any] = {
        "resources": _resources(inputs, host, rules, privileged),
        "cgroupsPath": cgroups_path(inputs.cgroup_driver, _cgroup_parent(inputs), inputs.container_id,
                                    inputs.namespace),
        "namespaces": _namespaces(inputs, host, privileged),
    }
    mapping = pod_mapping(_pod_namespace_options(inputs))
    if mapping is not None:
        linux["namespaces"].insert(0, _joined("user", inputs.namespaces.user, "pod's user"))
        linux["uidMappings"] = [_id_mapping(mapping.uids)]
        linux["gidMappings"] = [_id_mapping(mapping.gids)]
    if devices:
        linux["devices"] = devices
    if not privileged:
        if sc.masked_paths:
            linux["maskedPaths"] = list(sc.masked_paths)
        if sc.readonly_paths:
            linux["readonlyPaths"] = list(sc.readonly_paths)
    sysctls = _sysctls(inputs)
    if sysctls:
        linux["sysctl"] = sysctls
    profile = _seccomp(sc, caps, host)
    if profile is not None:
        linux["seccomp"] = profile
    return linux


def _id_mapping(mapping: IDMap) -> dict[str, int]:
    return {"containerID": mapping.container_id, "hostID": mapping.host_id, "size": mapping.size}


def _cgroup_parent(inputs: SpecInputs) -> str:
    if inputs.cgroup_parent is not None:
        return inputs.cgroup_parent
    return str(inputs.sandbox_config.linux.cgroup_parent)


def _namespaces(inputs: SpecInputs, host: HostFacts, privileged: bool) -> list[dict[str, str]]:
    paths = inputs.namespaces
    namespaces: list[dict[str, str]] = []
    pid = _pid_namespace(inputs)
    if pid is not None:
        namespaces.append(pid)
    if not _host_ipc(inputs):
        namespaces.append(_joined("ipc", paths.ipc, "IPC"))
    # A pod on the host network also keeps the host's hostname (UTS).
    if not _host_network(inputs):
        namespaces.append(_joined("uts", paths.uts, "UTS"))
    namespaces.append({"type": "mount"})
    if not _host_network(inputs):
        namespaces.append(_joined("network", paths.net, "network"))
    # cgroup namespaces hide the host's cgroup tree; containerd uses them only on cgroup v2 and not for
    # privileged containers, which may need that tree.
    if host.cgroup_v2 and not privileged:
        namespaces.append({"type": "cgroup"})
    return namespaces


def _pid_namespace(inputs: SpecInputs) -> dict[str, str] | None:
    mode = _pid_mode(inputs)
    if mode == CONTAINER:
        return {"type": "pid"}
    if mode == NODE:
        return None
    if mode == TARGET:
        return _joined("pid", inputs.target_pid_namespace, "target container's PID")
    return _joined("pid", inputs.namespaces.pid, "pod's shared PID")


def _joined(ns_type: str, path: str | Path | None, what: str) -> dict[str, str]:
    if not path:
        raise errdefs.InvalidArgument(f"the container joins the {what} namespace, but no path to it was given")
    return {"type": ns_type, "path": str(path)}


def _pid_mode(inputs: SpecInputs) -> int:
    # The container's own option decides; without one, the pod's (crictl sends container configs without it).
    sc = _security_context(inputs.config)
    if sc.HasField("namespace_options"):
        return int(sc.namespace_options.pid)
    return int(_pod_namespace_options(inputs).pid)


def _host_network(inputs: SpecInputs) -> bool:
    return bool(_pod_namespace_options(inputs).network == NODE)


def _host_ipc(inputs: SpecInputs) -> bool:
    return bool(_pod_namespace_options(inputs).ipc == NODE)


def _pod_namespace_options(inputs: SpecInputs) -> api_pb2.NamespaceOption:
    return inputs.sandbox_config.linux.security_context.namespace_options


def _sysctls(inputs: SpecInputs) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(inputs.sandbox_config.linux.sysctls.items()):
        if key.startswith("net."):
            isolated = not _host_network(inputs)
        elif key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            isolated = not _host_ipc(inputs)
        elif key == "kernel.domainname":
            isolated = not _host_network(inputs)
        elif key == "kernel.hostname":
            raise errdefs.InvalidArgument("sysctl 'kernel.hostname' is not allowed: the pod's hostname sets it")
        else:
            raise errdefs.InvalidArgument(f"sysctl {key!r} is not namespaced: setting it would change the host")
        # In a namespace shared with the host, the sysctl would change the host's value.
        if isolated:
            out[key] = value
    return out


def linux_resources(r: api_pb2.LinuxContainerResources, host: HostFacts) -> dict[str, Any]:
    """The OCI linux.resources for CRI resources, without device rules: what ``runc update`` takes."""
    cpu: dict[str, Any] = {}
    if r.cpu_shares:
        cpu["shares"] = int(r.cpu_shares)
    if r.cpu_quota:
        cpu["quota"] = int(r.cpu_quota)
    if r.cpu_period:
        cpu["period"] = int(r.cpu_period)
    if r.cpuset_cpus:
        cpu["cpus"] = str(r.cpuset_cpus)
    if r.cpuset_mems:
        cpu["mems"] = str(r.cpuset_mems)
    resources: dict[str, Any] = {"memory": _memory(r, host), "cpu": cpu}
    # Without the hugetlb controller the limits cannot be applied; containerd's default is to go on without them.
    if host.hugetlb_controller and len(r.hugepage_limits):
        resources["hugepageLimits"] = [{"pageSize": h.page_size, "limit": int(h.limit)} for h in r.hugepage_limits]
    if len(r.unified):
        resources["unified"] = dict(r.unified)
    return resources


def _resources(
    inputs: SpecInputs, host: HostFacts, device_rules: list[dict[str, Any]], privileged: bool
) -> dict[str, Any]:
    devices = [{"allow": False, "access": "rwm"}, *device_rules]
    if privileged:
        devices = [{"allow": True, "access": "rwm"}]
    resources: dict[str, Any] = {"devices": devices}
    config = inputs.config
    if config.HasField("linux") and config.linux.HasField("resources"):
        resources.update(linux_resources(config.linux.resources, host))
    return resources


def _memory(r: api_pb2.LinuxContainerResources, host: HostFacts) -> dict[str, int]:
    memory: dict[str, int] = {}
    limit, swap = int(r.memory_limit_in_bytes), int(r.memory_swap_limit_in_bytes)
    if limit:
        memory["limit"] = limit
        # Swap equal to the limit means no swap: a container should not swap unless asked to.
        if host.swap_controller:
            memory["swap"] = limit
    if swap and host.swap_controller:
        memory["swap"] = swap
    return memory


def _seccomp(sc: api_pb2.LinuxContainerSecurityContext, caps: list[str], host: HostFacts) -> dict[str, Any] | None:
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
        return seccomp.load_profile(_trim_prefix(profile.localhost_ref, LOCALHOST_PREFIX))
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


# --- devices ---------------------------------------------------------------------------------------------------


def _cri_devices(config: api_pb2.ContainerConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for device in config.devices:
        if not device.host_path.startswith("/"):
            raise errdefs.InvalidArgument(f"device host path {device.host_path!r} is not absolute")
        if set(device.permissions) - set("rwm"):
            raise errdefs.InvalidArgument(
                f"device {device.host_path!r}: permissions {device.permissions!r} are not a combination of r, w, m")
        try:
            path = os.path.realpath(device.host_path, strict=True)
        except OSError as exc:
            raise errdefs.InvalidArgument(f"device {device.host_path!r}: {exc.strerror or exc}") from exc
        for dev in _devices_at(path, device.container_path):
            devices.append(dev)
            rules.append({"allow": True, "type": dev["type"], "major": dev["major"], "minor": dev["minor"],
                          "access": device.permissions})
    return devices, rules


def _devices_at(path: str, container_path: str) -> list[dict[str, Any]]:
    """The device at ``path``, or every device under it when it is a directory (as for /dev/snd)."""
    if not os.path.isdir(path):
        device = _device(path)
        if device is None:
            raise errdefs.InvalidArgument(f"device {path!r} is not a device node")
        if container_path:
            device["path"] = container_path
        return [device]
    return _devices_in_dir(path, container_path, strict=True)


def _host_devices() -> list[dict[str, Any]]:
    return _devices_in_dir("/dev", "", strict=False)


def _devices_in_dir(path: str, container_path: str, strict: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        if not strict:
            return out
        raise errdefs.InvalidArgument(f"cannot list devices in {path!r}: {exc.strerror}") from exc
    for entry in entries:
        target = posixpath.join(container_path, entry.name) if container_path else ""
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in HOST_DEV_SKIP:
                out += _devices_in_dir(entry.path, target, strict)
            continue
        if entry.name == "console":
            continue
        device = _device(entry.path)
        # FIFOs are not devices to a cgroup; links and regular files are skipped too.
        if device is None or device["type"] == "p":
            continue
        if target:
            device["path"] = target
        out.append(device)
    return out


def _device(path: str) -> dict[str, Any] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        return None
    return {
        "path": path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
    }


# --- annotations and helpers -----------------------------------------------------------------------------------


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


def _security_context(config: api_pb2.ContainerConfig) -> api_pb2.LinuxContainerSecurityContext:
    return config.linux.security_context


def _strings(image_config: Mapping[str, Any], key: str) -> list[str]:
    value = image_config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errdefs.InvalidArgument(f"image config {key} is not a list of strings")
    return list(value)


def _string(image_config: Mapping[str, Any], key: str) -> str:
    value = image_config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errdefs.InvalidArgument(f"image config {key} is not a string")
    return value


def _trim_prefix(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text


# --- host probes -----------------------------------------------------------------------------------------------


def _effective_capabilities(status: str = "/proc/self/status") -> tuple[str, ...]:
    try:
        for line in Path(status).read_text().splitlines():
            if line.startswith("CapEff:"):
                bits = int(line.split(":", 1)[1], 16)
                return tuple(name for i, name in enumerate(KNOWN_CAPS) if bits >> i & 1)
    except (OSError, ValueError):
        pass
    return ()


def _swap_controller(v2: bool) -> bool:
    if not v2:
        return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    # memory.swap.max exists in every cgroup but the root one: look in our own.
    return os.path.exists(posixpath.join("/sys/fs/cgroup", _own_unified_cgroup().lstrip("/"), "memory.swap.max"))


def _own_unified_cgroup() -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return "/"


def _hugetlb_controller(v2: bool, root: Path = Path("/sys/fs/cgroup")) -> bool:
    if not v2:
        # Mounted, not merely a folder: in a container (a kind node) the folders of every controller the
        # kernel knows can exist without the hierarchy behind them.
        return (root / "hugetlb" / "cgroup.procs").exists()
    try:
        return "hugetlb" in (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def _own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text().strip())
    except (OSError, ValueError):
        return 0
