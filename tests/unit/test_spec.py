"""OCI spec generation: each CRI feature's fields as containerd 1.6 writes them, then one real container under runc."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import errdefs
from cri.api.runtime.v1 import api_pb2
from runtime import seccomp
from runtime.cgroups import CgroupDriver
from runtime.features import HandlerFeatures
from runtime.namespaces import PodNamespaces
from runtime.podfiles import PodFiles
from runtime.spec import (
    DEFAULT_CAPS,
    KNOWN_CAPS,
    HostFacts,
    SpecInputs,
    container_spec,
    linux_resources,
    process_args,
)
from runtime.spec import host as runtime_spec_host
from runtime.user import ResolvedUser, resolve_user

NODE = api_pb2.NODE
POD = api_pb2.POD
CONTAINER = api_pb2.CONTAINER
TARGET = api_pb2.TARGET
PRIVATE = api_pb2.PROPAGATION_PRIVATE
HOST_TO_CONTAINER = api_pb2.PROPAGATION_HOST_TO_CONTAINER
BIDIRECTIONAL = api_pb2.PROPAGATION_BIDIRECTIONAL
RUNTIME_DEFAULT = api_pb2.SecurityProfile.ProfileType.Value("RuntimeDefault")
UNCONFINED = api_pb2.SecurityProfile.ProfileType.Value("Unconfined")
LOCALHOST = api_pb2.SecurityProfile.ProfileType.Value("Localhost")

HOST = HostFacts(capabilities=KNOWN_CAPS, hostname="node1", machine="x86_64", kernel=(6, 1), oom_score_adj=-10)
IMAGE = {"Env": ["PATH=/usr/bin:/bin", "FOO=img"], "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["sleep 1000"],
         "WorkingDir": "/work", "User": "app", "StopSignal": "SIGTERM"}
NAMESPACES = PodNamespaces(net=Path("/run/netns/pod"), ipc=Path("/run/ipcns/pod"), uts=Path("/run/utsns/pod"),
                           pid_holder=42)


@pytest.fixture
def pod_files(tmp_path: Path) -> PodFiles:
    for name in ("hosts", "resolv.conf", "hostname"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "shm").mkdir()
    return PodFiles(hostname=tmp_path / "hostname", hosts=tmp_path / "hosts", resolv_conf=tmp_path / "resolv.conf",
                    shm=tmp_path / "shm")


def pod_config(
    network: api_pb2.NamespaceMode = POD, ipc: api_pb2.NamespaceMode = POD, pid: api_pb2.NamespaceMode = CONTAINER,
    privileged: bool = False, **fields: Any,
) -> api_pb2.PodSandboxConfig:
    options = api_pb2.NamespaceOption(network=network, ipc=ipc, pid=pid)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="web", namespace="default", uid="pod-uid"),
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/podpod-uid",
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=options, privileged=privileged),
            sysctls=fields.pop("sysctls", {}),
        ),
        **fields,
    )


def container_config(sc: api_pb2.LinuxContainerSecurityContext | None = None, **fields: Any) -> api_pb2.ContainerConfig:
    resources = fields.pop("resources", None)
    linux = api_pb2.LinuxContainerConfig(security_context=sc or api_pb2.LinuxContainerSecurityContext())
    if resources is not None:
        linux.resources.CopyFrom(resources)
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="nginx"), image=api_pb2.ImageSpec(image="docker.io/library/nginx:1"),
        linux=linux, **fields,
    )


def inputs(
    config: api_pb2.ContainerConfig | None = None, pod: api_pb2.PodSandboxConfig | None = None, **fields: Any
) -> SpecInputs:
    values: dict[str, Any] = {
        "container_id": "c1", "sandbox_id": "s1", "config": config or container_config(),
        "sandbox_config": pod or pod_config(), "image_config": IMAGE, "rootfs": "rootfs",
        "user": ResolvedUser(1000, 1000, (10, 1000), "app"), "namespaces": NAMESPACES, "host": HOST,
    }
    values.update(fields)
    return SpecInputs(**values)


def spec(config: api_pb2.ContainerConfig | None = None, pod: api_pb2.PodSandboxConfig | None = None,
         **fields: Any) -> dict[str, Any]:
    return container_spec(inputs(config, pod, **fields))


def sc(**fields: Any) -> api_pb2.LinuxContainerSecurityContext:
    return api_pb2.LinuxContainerSecurityContext(**fields)


def caps(add: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> api_pb2.Capability:
    return api_pb2.Capability(add_capabilities=add, drop_capabilities=drop)


def mounts_by_destination(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in result["mounts"]}


# --- the whole spec -----------------------------------------------------------------------------------------


def test_a_plain_container(pod_files: PodFiles) -> None:
    result = spec(files=pod_files)
    assert result["ociVersion"] == "1.0.2-dev"
    assert result["root"] == {"path": "rootfs"}
    assert result["process"] == {
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 1000]},
        "args": ["/bin/sh", "-c", "sleep 1000"],
        "env": ["PATH=/usr/bin:/bin", "HOSTNAME=node1", "FOO=img"],
        "cwd": "/work",
        "capabilities": {"bounding": list(DEFAULT_CAPS), "effective": list(DEFAULT_CAPS),
                         "permitted": list(DEFAULT_CAPS)},
    }
    assert result["linux"] == {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "cgroupsPath": "/kubepods/podpod-uid/c1",
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc", "path": "/run/ipcns/pod"},
            {"type": "uts", "path": "/run/utsns/pod"},
            {"type": "mount"},
            {"type": "network", "path": "/run/netns/pod"},
        ],
    }
    json.dumps(result)  # a config.json as it stands


def test_annotations_are_containerds() -> None:
    assert spec(image_name="docker.io/library/nginx@sha256:ab")["annotations"] == {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": "s1",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "pod-uid",
        "io.kubernetes.cri.sandbox-name": "web",
        "io.kubernetes.cri.container-name": "nginx",
        "io.kubernetes.cri.image-name": "docker.io/library/nginx@sha256:ab",
    }
    assert spec()["annotations"]["io.kubernetes.cri.image-name"] == "docker.io/library/nginx:1"


# --- process ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "image", "expected"),
    [
        ([], [], IMAGE, ["/bin/sh", "-c", "sleep 1000"]),
        ([], ["echo hi"], IMAGE, ["/bin/sh", "-c", "echo hi"]),  # CRI args replace Cmd
        (["/bin/cat"], [], IMAGE, ["/bin/cat"]),  # a CRI command alone drops the image's Cmd too
        (["/bin/echo"], ["a", "b"], IMAGE, ["/bin/echo", "a", "b"]),
        ([], [], {"Entrypoint": [""], "Cmd": ["/bin/true"]}, ["/bin/true"]),
        ([], [], {"Cmd": ["/bin/true"]}, ["/bin/true"]),
    ],
)
def test_process_args(command: list[str], args: list[str], image: dict[str, Any], expected: list[str]) -> None:
    assert process_args(container_config(command=command, args=args), image) == expected


def test_no_command_at_all_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="no command specified"):
        spec(image_config={"Env": []})


def test_image_config_of_the_wrong_type_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="Cmd is not a list of strings"):
        spec(image_config={"Cmd": "sleep 1"})


def test_env_image_then_cri_then_hostname_and_tty() -> None:
    config = container_config(envs=[api_pb2.KeyValue(key="FOO", value="cri"), api_pb2.KeyValue(key="NEW", value="1"),
                                    api_pb2.KeyValue(key="PATH", value="/cri")], tty=True)
    process = spec(config, pod_config(hostname="web-0"))["process"]
    # An image variable the CRI sets again stays, followed by the CRI one: runc lets the later win. Variables the
    # defaults hold (PATH, TERM, HOSTNAME) are replaced in place.
    assert process["env"] == ["PATH=/cri", "TERM=xterm", "HOSTNAME=web-0", "FOO=img", "FOO=cri", "NEW=1"]
    assert process["terminal"] is True


def test_env_without_image_path_gets_the_default_path() -> None:
    env = spec(image_config={"Cmd": ["x"]}, hostname="given")["process"]["env"]
    assert env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=given"]


@pytest.mark.parametrize(
    ("working_dir", "image", "cwd"),
    [("/srv", IMAGE, "/srv"), ("", IMAGE, "/work"), ("", {"Cmd": ["x"]}, "/")],
)
def test_cwd(working_dir: str, image: dict[str, Any], cwd: str) -> None:
    assert spec(container_config(working_dir=working_dir), image_config=image)["process"]["cwd"] == cwd


def test_relative_cwd_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="'srv' is not an absolute path"):
        spec(container_config(working_dir="srv"))


def test_no_new_privileges_only_when_asked() -> None:
    assert "noNewPrivileges" not in spec()["process"]
    assert spec(container_config(sc(no_new_privs=True)))["process"]["noNewPrivileges"] is True


def test_no_rlimits_and_no_lsm_labels() -> None:
    process = spec()["process"]
    assert not {"rlimits", "apparmorProfile", "selinuxLabel"} & process.keys()


def test_oom_score_adj_comes_with_resources() -> None:
    assert "oomScoreAdj" not in spec()["process"]
    resources = api_pb2.LinuxContainerResources(oom_score_adj=-997)
    assert spec(container_config(resources=resources))["process"]["oomScoreAdj"] == -997
    # Restricted: never below the runtime's own value, which an unprivileged runtime could not lower to.
    restricted = spec(container_config(resources=resources), restrict_oom_score_adj=True)
    assert restricted["process"]["oomScoreAdj"] == -10


# --- capabilities -------------------------------------------------------------------------------------------


def bounding(result: dict[str, Any]) -> list[str]:
    capabilities = result["process"]["capabilities"]
    assert capabilities.get("bounding") == capabilities.get("effective") == capabilities.get("permitted")
    return list(capabilities.get("bounding", []))


def test_add_and_drop_capabilities() -> None:
    result = spec(container_config(sc(capabilities=caps(add=("sys_admin", "NET_ADMIN", "chown"),
                                                        drop=("KILL", "CAP_MKNOD")))))
    expected = [c for c in DEFAULT_CAPS if c not in ("CAP_KILL", "CAP_MKNOD")] + ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert bounding(result) == expected


def test_add_all_uses_the_runtimes_capabilities() -> None:
    host = replace(HOST, capabilities=("CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"))
    result = spec(container_config(sc(capabilities=caps(add=("ALL",), drop=("NET_RAW",)))), host=host)
    assert bounding(result) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


def test_drop_all_then_add() -> None:
    result = spec(container_config(sc(capabilities=caps(add=("NET_BIND_SERVICE",), drop=("all",)))))
    assert bounding(result) == ["CAP_NET_BIND_SERVICE"]
    assert spec(container_config(sc(capabilities=caps(drop=("ALL",)))))["process"]["capabilities"] == {}


def test_unknown_capability_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="unknown capability 'FLY'"):
        spec(container_config(sc(capabilities=caps(add=("FLY",)))))


def test_privileged_gets_every_capability_of_the_runtime() -> None:
    config = container_config(sc(privileged=True, capabilities=caps(drop=("ALL",))))
    assert bounding(spec(config, pod_config(privileged=True))) == list(KNOWN_CAPS)


def test_privileged_container_in_an_unprivileged_pod_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="no privileged container allowed in sandbox"):
        spec(container_config(sc(privileged=True)))


def test_effective_capabilities_are_read_from_proc_status(tmp_path: Path) -> None:
    from runtime.spec.host import effective_capabilities

    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000200001\n")
    assert effective_capabilities(str(status)) == ("CAP_CHOWN", "CAP_SYS_ADMIN")


# --- mounts -------------------------------------------------------------------------------------------------


def test_default_mounts_and_pod_files(pod_files: PodFiles) -> None:
    result = spec(files=pod_files)
    assert [(m["destination"], m["type"], m["source"], m["options"]) for m in result["mounts"]] == [
        ("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        ("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        ("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        ("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ("/etc/hostname", "bind", str(pod_files.hostname), ["rbind", "rprivate", "rw"]),
        ("/etc/hosts", "bind", str(pod_files.hosts), ["rbind", "rprivate", "rw"]),
        ("/etc/resolv.conf", "bind", str(pod_files.resolv_conf), ["rbind", "rprivate", "rw"]),
        ("/dev/shm", "bind", str(pod_files.shm), ["rbind", "rprivate", "rw"]),
    ]


def test_without_a_pod_shm_the_default_tmpfs_stays() -> None:
    shm = mounts_by_destination(spec())["/dev/shm"]
    assert (shm["type"], shm["source"]) == ("tmpfs", "shm")
    assert shm["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]


def test_host_ipc_binds_the_hosts_dev_shm(pod_files: PodFiles) -> None:
    result = spec(pod=pod_config(ipc=NODE), files=pod_files)
    assert mounts_by_destination(result)["/dev/shm"]["source"] == "/dev/shm"


def test_readonly_rootfs_makes_pod_files_readonly_too(pod_files: PodFiles) -> None:
    result = spec(container_config(sc(readonly_rootfs=True)), files=pod_files)
    assert result["root"] == {"path": "rootfs", "readonly": True}
    mounts = mounts_by_destination(result)
    assert [mounts[d]["options"][-1] for d in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm")] == [
        "ro", "ro", "ro", "rw"]


def test_cri_mounts_sorted_by_depth_and_overriding(tmp_path: Path, pod_files: PodFiles) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "sub").mkdir()
    my_hosts = tmp_path / "my-hosts"
    my_hosts.write_text("")
    config = container_config(mounts=[
        api_pb2.Mount(container_path="/data/sub", host_path=str(tmp_path / "sub"), readonly=True),
        api_pb2.Mount(container_path="/data", host_path=str(tmp_path / "data"), propagation=PRIVATE),
        api_pb2.Mount(container_path="/etc/hosts", host_path=str(my_hosts)),
        api_pb2.Mount(container_path="/sys/fs/cgroup", host_path="/sys/fs/cgroup"),
    ])
    result = spec(config, files=pod_files)
    destinations = [m["destination"] for m in result["mounts"]]
    assert destinations == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/data", "/data/sub", "/etc/hosts",
                            "/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/sys/fs/cgroup"]
    mounts = mounts_by_destination(result)
    assert mounts["/etc/hosts"] == {"destination": "/etc/hosts", "type": "bind", "source": str(my_hosts),
                                    "options": ["rbind", "rprivate", "rw"]}
    assert mounts["/data/sub"]["options"] == ["rbind", "rprivate", "ro"]
    assert mounts["/sys/fs/cgroup"]["type"] == "bind"


def test_a_dev_mount_replaces_every_default_under_dev(tmp_path: Path) -> None:
    config = container_config(mounts=[api_pb2.Mount(container_path="/dev", host_path=str(tmp_path))])
    destinations = [m["destination"] for m in spec(config)["mounts"]]
    assert destinations == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


def test_missing_host_path_is_created_and_symlinks_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    config = container_config(mounts=[
        api_pb2.Mount(container_path="/new", host_path=str(tmp_path / "a" / "b")),
        api_pb2.Mount(container_path="/linked", host_path=str(tmp_path / "link")),
    ])
    mounts = mounts_by_destination(spec(config))
    assert (tmp_path / "a" / "b").is_dir()
    assert mounts["/new"]["source"] == str(tmp_path / "a" / "b")
    assert mounts["/linked"]["source"] == str(tmp_path / "real")


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (api_pb2.Mount(container_path="/data", host_path="data"), "host path 'data'.*not absolute"),
        (api_pb2.Mount(container_path="/data", host_path=""), "host path ''.*not absolute"),
        (api_pb2.Mount(container_path="data", host_path="/tmp"), "container path 'data' is not absolute"),
        (api_pb2.Mount(container_path="/d", image=api_pb2.ImageSpec(image="busybox")), "image volume was not prepared"),
        (api_pb2.Mount(container_path="/d", image_sub_path="bin"), "sub path needs an image"),
    ],
)
def test_bad_mounts_are_invalid_arguments(mount: api_pb2.Mount, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        spec(container_config(mounts=[mount]))


RRO = HandlerFeatures(recursive_read_only_mounts=True)


def test_an_image_volume_binds_its_view_read_only(tmp_path: Path) -> None:
    mount = api_pb2.Mount(container_path="/img", image=api_pb2.ImageSpec(image="busybox"), readonly=False)
    bound = mounts_by_destination(spec(container_config(mounts=[mount]), bind_sources={"/img": str(tmp_path)}))
    assert bound["/img"]["source"] == str(tmp_path)
    assert bound["/img"]["options"] == ["rbind", "rprivate", "ro"]


def test_a_recursive_read_only_mount_asks_the_runtime_for_rro(tmp_path: Path) -> None:
    mount = api_pb2.Mount(container_path="/d", host_path=str(tmp_path), readonly=True, recursive_read_only=True)
    options = mounts_by_destination(spec(container_config(mounts=[mount]), handler=RRO))["/d"]["options"]
    assert options == ["rbind", "rprivate", "ro", "rro"]


@pytest.mark.parametrize(
    ("mount", "handler", "message"),
    [
        (api_pb2.Mount(container_path="/d", host_path="/tmp", recursive_read_only=True, readonly=True),
         HandlerFeatures(), "not supported by the runtime handler"),
        (api_pb2.Mount(container_path="/d", host_path="/tmp", recursive_read_only=True), RRO, "must be read-only"),
        (api_pb2.Mount(container_path="/d", host_path="/tmp", recursive_read_only=True, readonly=True,
                       propagation=HOST_TO_CONTAINER), RRO, "private propagation"),
    ],
)
def test_recursive_read_only_mounts_the_handler_or_request_cannot_honour_are_refused(
        mount: api_pb2.Mount, handler: HandlerFeatures, message: str) -> None:
    with pytest.raises(errdefs.FailedPrecondition, match=message):
        spec(container_config(mounts=[mount]), handler=handler)


def write_mountinfo(tmp_path: Path, optional: str) -> HostFacts:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"58 27 254:0 {tmp_path} {tmp_path} rw,relatime {optional} - ext4 /dev/vda rw\n"
    )
    return replace(HOST, mountinfo=str(mountinfo))


@pytest.mark.parametrize(
    ("optional", "propagation", "option", "rootfs"),
    [
        ("shared:1", BIDIRECTIONAL, "rshared", "rshared"),
        ("shared:1", HOST_TO_CONTAINER, "rslave", "rslave"),
        ("master:3", HOST_TO_CONTAINER, "rslave", "rslave"),
    ],
)
def test_mount_propagation(
    tmp_path: Path, optional: str, propagation: api_pb2.MountPropagation, option: str, rootfs: str
) -> None:
    config = container_config(mounts=[api_pb2.Mount(container_path="/m", host_path=str(tmp_path),
                                                    propagation=propagation)])
    result = spec(config, host=write_mountinfo(tmp_path, optional))
    assert mounts_by_destination(result)["/m"]["options"] == ["rbind", option, "rw"]
    assert result["linux"]["rootfsPropagation"] == rootfs


@pytest.mark.parametrize(("optional", "propagation"), [("", BIDIRECTIONAL), ("master:3", BIDIRECTIONAL),
                                                       ("", HOST_TO_CONTAINER)])
def test_propagation_needs_a_shared_host_mount(
    tmp_path: Path, optional: str, propagation: api_pb2.MountPropagation
) -> None:
    config = container_config(mounts=[api_pb2.Mount(container_path="/m", host_path=str(tmp_path),
                                                    propagation=propagation)])
    with pytest.raises(errdefs.FailedPrecondition, match=f"is mounted on '{tmp_path}' but it is not a shared"):
        spec(config, host=write_mountinfo(tmp_path, optional))


def test_privileged_sysfs_and_cgroup_are_writable() -> None:
    config = container_config(sc(privileged=True))
    mounts = mounts_by_destination(spec(config, pod_config(privileged=True)))
    assert mounts["/sys"]["options"][-1] == "rw"
    assert mounts["/sys/fs/cgroup"]["options"][-1] == "rw"


# --- namespaces ---------------------------------------------------------------------------------------------


def namespaces(result: dict[str, Any]) -> dict[str, str | None]:
    return {ns["type"]: ns.get("path") for ns in result["linux"]["namespaces"]}


def test_host_network_leaves_out_network_and_uts() -> None:
    assert namespaces(spec(pod=pod_config(network=NODE))) == {"pid": None, "ipc": "/run/ipcns/pod", "mount": None}


def test_host_ipc_and_pid() -> None:
    pod = pod_config(network=NODE, ipc=NODE, pid=NODE)
    config = container_config(sc(namespace_options=api_pb2.NamespaceOption(network=NODE, ipc=NODE, pid=NODE)))
    assert namespaces(spec(config, pod)) == {"mount": None}


def test_pod_pid_namespace_is_joined() -> None:
    config = container_config(sc(namespace_options=api_pb2.NamespaceOption(pid=POD)))
    assert namespaces(spec(config))["pid"] == "/proc/42/ns/pid"


def test_without_container_namespace_options_the_pods_pid_mode_applies() -> None:
    assert namespaces(spec(pod=pod_config(pid=POD)))["pid"] == "/proc/42/ns/pid"
    assert "pid" not in namespaces(spec(pod=pod_config(pid=NODE)))


def test_target_pid_namespace() -> None:
    config = container_config(sc(namespace_options=api_pb2.NamespaceOption(pid=TARGET, target_id="other")))
    assert namespaces(spec(config, target_pid_namespace="/proc/77/ns/pid"))["pid"] == "/proc/77/ns/pid"
    with pytest.raises(errdefs.InvalidArgument, match="target container's PID namespace"):
        spec(config)


def test_a_namespace_to_join_without_a_path_is_an_invalid_argument() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="joins the network namespace, but no path"):
        spec(namespaces=replace(NAMESPACES, net=None))
    with pytest.raises(errdefs.InvalidArgument, match="pod's shared PID namespace"):
        spec(pod=pod_config(pid=POD), namespaces=replace(NAMESPACES, pid_holder=None))


def test_cgroup_namespace_on_cgroup_v2_unless_privileged() -> None:
    v2 = replace(HOST, cgroup_v2=True)
    assert namespaces(spec(host=v2))["cgroup"] is None
    privileged = spec(container_config(sc(privileged=True)), pod_config(privileged=True), host=v2)
    assert "cgroup" not in namespaces(privileged)
    assert "cgroup" not in namespaces(spec())


# --- linux: cgroups, resources, sysctls, paths --------------------------------------------------------------


def test_cgroups_path_follows_the_driver() -> None:
    assert spec(cgroup_parent="/given")["linux"]["cgroupsPath"] == "/given/c1"
    slice_path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podX.slice"
    assert (spec(cgroup_parent=slice_path, cgroup_driver=CgroupDriver.SYSTEMD)["linux"]["cgroupsPath"]
            == "kubepods-burstable-podX.slice:cri-containerd:c1")
    pod = pod_config()
    pod.linux.cgroup_parent = ""
    assert spec(pod=pod)["linux"]["cgroupsPath"] == "/k8s.io/c1"
    assert spec(pod=pod, cgroup_driver=CgroupDriver.SYSTEMD)["linux"]["cgroupsPath"] == "system.slice:cri-containerd:c1"


def test_resources() -> None:
    resources = api_pb2.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=64 << 20, cpuset_cpus="0-1",
        cpuset_mems="0", hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=1 << 21)],
        unified={"memory.high": "1000000"},
    )
    host = replace(HOST, swap_controller=True, hugetlb_controller=True)
    result = spec(container_config(resources=resources), host=host)["linux"]["resources"]
    assert result == {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        # Swap equal to the limit: no swapping unless asked for.
        "memory": {"limit": 64 << 20, "swap": 64 << 20},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
        "unified": {"memory.high": "1000000"},
    }


def test_resources_without_swap_or_hugetlb_controllers() -> None:
    resources = api_pb2.LinuxContainerResources(
        memory_limit_in_bytes=64 << 20, memory_swap_limit_in_bytes=128 << 20,
        hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=0)])
    result = spec(container_config(resources=resources))["linux"]["resources"]
    assert result == {"devices": [{"allow": False, "access": "rwm"}], "cpu": {}, "memory": {"limit": 64 << 20}}
    with_swap = spec(container_config(resources=resources), host=replace(HOST, swap_controller=True))
    assert with_swap["linux"]["resources"]["memory"] == {"limit": 64 << 20, "swap": 128 << 20}


def test_linux_resources_for_an_update() -> None:
    resources = api_pb2.LinuxContainerResources(cpu_quota=20000, cpu_period=100000, memory_limit_in_bytes=1 << 30)
    assert linux_resources(resources, HOST).to_json() == {"cpu": {"quota": 20000, "period": 100000},
                                                "memory": {"limit": 1 << 30}}


def test_sysctls_follow_the_pods_namespaces() -> None:
    sysctls = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20",
               "kernel.domainname": "example"}
    assert spec(pod=pod_config(sysctls=sysctls))["linux"]["sysctl"] == sysctls
    # In the host's network or IPC namespace they would change the host's values.
    host_net = spec(pod=pod_config(network=NODE, sysctls=sysctls))["linux"]["sysctl"]
    assert host_net == {"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20"}
    assert "sysctl" not in spec(pod=pod_config(network=NODE, ipc=NODE, sysctls=sysctls))["linux"]


@pytest.mark.parametrize(("key", "message"), [("vm.swappiness", "not namespaced"),
                                              ("kernel.hostname", "pod's hostname")])
def test_unnamespaced_sysctls_are_invalid_arguments(key: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        spec(pod=pod_config(sysctls={key: "1"}))


def test_masked_and_readonly_paths_come_from_the_request() -> None:
    # containerd clears its built-in lists for CRI: kubelet sends them, and an empty list means "unmasked".
    assert not {"maskedPaths", "readonlyPaths"} & spec()["linux"].keys()
    config = container_config(sc(masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"]))
    linux = spec(config)["linux"]
    assert (linux["maskedPaths"], linux["readonlyPaths"]) == (["/proc/kcore"], ["/proc/sys"])
    privileged = container_config(sc(privileged=True, masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"]))
    assert not {"maskedPaths", "readonlyPaths"} & spec(privileged, pod_config(privileged=True))["linux"].keys()


# --- devices ------------------------------------------------------------------------------------------------


def test_device_with_container_path_and_permissions() -> None:
    st = os.stat("/dev/null")
    config = container_config(devices=[api_pb2.Device(host_path="/dev/null", container_path="/dev/mynull",
                                                      permissions="rw")])
    linux = spec(config)["linux"]
    assert linux["devices"] == [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                 "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}]
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]


def test_a_device_directory_adds_every_device_in_it(tmp_path: Path) -> None:
    try:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(tmp_path / "zero", 0o640 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating device nodes needs CAP_MKNOD")
    os.chmod(tmp_path / "null", 0o666)  # mknod's mode went through the umask
    (tmp_path / "regular").write_text("")
    config = container_config(devices=[api_pb2.Device(host_path=str(tmp_path), container_path="/dev/x",
                                                      permissions="rwm")])
    devices = spec(config)["linux"]["devices"]
    assert [(d["path"], d["minor"], d["fileMode"]) for d in devices] == [("/dev/x/null", 3, 0o666),
                                                                         ("/dev/x/zero", 5, 0o640)]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (api_pb2.Device(host_path="/nonexistent/dev", permissions="rwm"), "'/nonexistent/dev'"),
        (api_pb2.Device(host_path="dev/null", permissions="rwm"), "not absolute"),
        (api_pb2.Device(host_path="/dev/null", permissions="rwx"), "permissions 'rwx'"),
        (api_pb2.Device(host_path="/etc/hostname", permissions="r"), "not a device node"),
    ],
)
def test_bad_devices_are_invalid_arguments(device: api_pb2.Device, message: str) -> None:
    if device.host_path == "/etc/hostname" and not os.path.exists(device.host_path):
        pytest.skip("this host has no /etc/hostname")
    with pytest.raises(errdefs.InvalidArgument, match=message):
        spec(container_config(devices=[device]))


def test_privileged_gets_the_hosts_devices_and_all_access() -> None:
    config = container_config(sc(privileged=True))
    linux = spec(config, pod_config(privileged=True))["linux"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    paths = {d["path"] for d in linux["devices"]}
    assert "/dev/null" in paths
    assert not any(p.startswith(("/dev/pts/", "/dev/shm/")) or p == "/dev/console" for p in paths)


# --- seccomp ------------------------------------------------------------------------------------------------


def profile(result: dict[str, Any]) -> dict[str, Any] | None:
    value = result["linux"].get("seccomp")
    return None if value is None else dict(value)


def allowed(profile_: dict[str, Any]) -> set[str]:
    return {n for s in profile_["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and "args" not in s for n in s["names"]}


def test_runtime_default_profile() -> None:
    result = profile(spec(container_config(sc(seccomp=api_pb2.SecurityProfile(profile_type=RUNTIME_DEFAULT)))))
    assert result is not None
    assert result["defaultAction"] == "SCMP_ACT_ERRNO"
    assert result["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = allowed(result)
    assert {"read", "write", "execve", "arch_prctl", "ptrace", "chroot"} <= names  # chroot: CAP_SYS_CHROOT is default
    assert not {"mount", "unshare", "setns", "reboot", "clone", "clone3"} & names
    # clone only without namespace flags; clone3 fails with ENOSYS so that libc falls back to clone.
    assert {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]} in result["syscalls"]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in result["syscalls"]
    assert len(result["syscalls"][0]["names"]) == 349


def test_runtime_default_follows_the_final_capabilities() -> None:
    context = sc(seccomp=api_pb2.SecurityProfile(profile_type=RUNTIME_DEFAULT),
                 capabilities=caps(add=("SYS_ADMIN",), drop=("SYS_CHROOT",)))
    result = profile(spec(container_config(context)))
    assert result is not None
    names = allowed(result)
    assert {"mount", "unshare", "clone", "clone3"} <= names
    assert "chroot" not in names
    assert not any(s["names"] == ["clone3"] and s["action"] == "SCMP_ACT_ERRNO" for s in result["syscalls"])


def test_default_profile_per_architecture_and_kernel() -> None:
    arm = seccomp.default_profile([], "aarch64", (4, 4))
    assert arm["architectures"] == ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    assert "ptrace" not in allowed(arm)  # before 4.8 ptrace could bypass seccomp
    s390 = seccomp.default_profile([], "s390x", (5, 4))
    assert s390["syscalls"][-2]["args"][0]["index"] == 1


def test_unconfined_unset_and_privileged_have_no_profile() -> None:
    assert profile(spec(container_config(sc(seccomp=api_pb2.SecurityProfile(profile_type=UNCONFINED))))) is None
    assert profile(spec()) is None
    privileged = sc(privileged=True, seccomp=api_pb2.SecurityProfile(profile_type=RUNTIME_DEFAULT))
    assert profile(spec(container_config(privileged), pod_config(privileged=True))) is None


def test_localhost_profile_is_loaded_with_ocis_keys_only(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "comment": "no", "includes": {}}],
    }))
    for ref in (str(path), "localhost/" + str(path)):
        context = sc(seccomp=api_pb2.SecurityProfile(profile_type=LOCALHOST, localhost_ref=ref))
        assert profile(spec(container_config(context))) == {
            "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot load seccomp profile"), ("{not json", "decoding seccomp profile"), ("[]", "not a JSON object")],
)
def test_bad_localhost_profiles_are_invalid_arguments(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    context = sc(seccomp=api_pb2.SecurityProfile(profile_type=LOCALHOST, localhost_ref=str(path)))
    with pytest.raises(errdefs.InvalidArgument, match=message):
        spec(container_config(context))


def test_localhost_ref_with_another_type_is_an_invalid_argument() -> None:
    context = sc(seccomp=api_pb2.SecurityProfile(profile_type=RUNTIME_DEFAULT, localhost_ref="/p.json"))
    with pytest.raises(errdefs.InvalidArgument, match="localhost_ref must only be set"):
        spec(container_config(context))


def test_deprecated_seccomp_profile_path(tmp_path: Path) -> None:
    assert profile(spec(container_config(sc(seccomp_profile_path="runtime/default")))) is not None
    assert profile(spec(container_config(sc(seccomp_profile_path="docker/default")))) is not None
    assert profile(spec(container_config(sc(seccomp_profile_path="unconfined")))) is None
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_LOG"}')
    localhost = profile(spec(container_config(sc(seccomp_profile_path=f"localhost/{path}"))))
    assert localhost == {"defaultAction": "SCMP_ACT_LOG"}
    with pytest.raises(errdefs.InvalidArgument, match="invalid seccomp profile 'strict'"):
        spec(container_config(sc(seccomp_profile_path="strict")))


# --- a real container ---------------------------------------------------------------------------------------

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "id", "cat", "grep", "touch", "echo")
CAP_NET_RAW_BIT = KNOWN_CAPS.index("CAP_NET_RAW")


@pytest.fixture
def runc_bundle(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.access("/usr/sbin/runc", os.X_OK) else None)
    if os.geteuid() != 0:
        pytest.skip("running a container with runc needs root")
    if runc is None:
        pytest.skip("runc is not installed")
    if not BUSYBOX.exists():
        pytest.skip(f"{BUSYBOX} is missing (Debian package busybox-static or busybox)")
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    state = tmp_path / "runc-state"
    yield runc, bundle, state


def test_the_spec_runs_under_runc(runc_bundle: tuple[str, Path, Path], tmp_path: Path, pod_files: PodFiles) -> None:
    runc, bundle, state = runc_bundle
    container_id = f"crishim-spec-{uuid.uuid4().hex[:12]}"
    script = "id -u; id -G; touch /probe 2>/dev/null && echo writable || echo read-only; grep CapBnd /proc/self/status"
    context = sc(
        run_as_username="app", readonly_rootfs=True, capabilities=caps(drop=("NET_RAW",)),
        seccomp=api_pb2.SecurityProfile(profile_type=RUNTIME_DEFAULT),
        namespace_options=api_pb2.NamespaceOption(network=NODE, ipc=NODE, pid=CONTAINER),
    )
    config = container_config(context, command=["/bin/sh", "-c", script])
    pod = pod_config(network=NODE, ipc=NODE)
    parent = f"/crishim-test-{uuid.uuid4().hex[:8]}"
    user = resolve_user(bundle / "rootfs", "", context)
    result = container_spec(inputs(config, pod, container_id=container_id, user=user, cgroup_parent=parent,
                                   namespaces=PodNamespaces(), files=pod_files, host=HostFacts.probe(),
                                   restrict_oom_score_adj=True))
    (bundle / "config.json").write_text(json.dumps(result))
    try:
        run = subprocess.run([runc, "--root", str(state), "run", "--bundle", str(bundle), container_id],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "--force", container_id], capture_output=True)
        _remove_cgroup_parent(parent)
    assert run.returncode == 0, run.stderr
    uid_line, groups_line, rootfs_line, cap_line = run.stdout.splitlines()
    assert uid_line == "1000"
    assert groups_line.split() == ["1000", "2000"]
    assert rootfs_line == "read-only"
    # A non-root process keeps no effective capabilities across execve (nothing is ambient), so the bounding set
    # is where a dropped capability shows.
    cap_bnd = int(cap_line.split(":", 1)[1], 16)
    assert not cap_bnd >> CAP_NET_RAW_BIT & 1
    assert cap_bnd & 1  # CAP_CHOWN, still in the default set


def _remove_cgroup_parent(parent: str) -> None:
    # runc removes the container's cgroup; the parent made up for the test is ours to remove.
    root = Path("/sys/fs/cgroup")
    candidates = [root / parent.lstrip("/")] + [c / parent.lstrip("/") for c in root.iterdir() if c.is_dir()]
    for path in candidates:
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()


def test_a_hugetlb_folder_without_its_hierarchy_is_no_controller(tmp_path: Path) -> None:
    (tmp_path / "hugetlb").mkdir()  # what a kind node on a host without the hierarchy shows
    assert not runtime_spec_host.hugetlb_controller(False, tmp_path)
    (tmp_path / "hugetlb" / "cgroup.procs").write_text("")
    assert runtime_spec_host.hugetlb_controller(False, tmp_path)
