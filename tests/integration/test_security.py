"""Security contexts and resources through crictl against crishim: the user a container runs as, a read-only
rootfs, dropped capabilities, memory and CPU limits in the container's cgroup (and the OOM killer when the
memory runs out), and UpdateContainerResources on a running container.
"""

from __future__ import annotations

from pathlib import Path

from runtime.spec import KNOWN_CAPS
from tests.support.cri_env import CriEnv

MIB = 1 << 20
CGROUP = Path("/sys/fs/cgroup")
UNIFIED = (CGROUP / "cgroup.controllers").exists()


def test_run_as_user(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("user", security_context={"run_as_user": {"value": 1000},
                                                                           "run_as_group": {"value": 1000}}))
    assert cri.exec(container_id, "id", "-u").stdout.strip() == "1000"
    assert cri.exec(container_id, "id", "-g").stdout.strip() == "1000"
    assert _status_field(cri, container_id, "Uid").split()[0] == "1000"
    named = cri.run(pod_id, cri.container("named", security_context={"run_as_username": "nobody"}))
    assert cri.exec(named, "id", "-u").stdout.strip() == "65534"


def test_readonly_rootfs(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("ro", security_context={"readonly_rootfs": True}))
    denied = cri.exec(container_id, "sh", "-c", "echo x > /written", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    # The pod's shm stays writable; so does a writable rootfs of another container.
    cri.exec(container_id, "sh", "-c", "echo x > /dev/shm/ok")
    writable = cri.run(pod_id, cri.container("rw"))
    cri.exec(writable, "sh", "-c", "echo x > /written")


def test_dropped_capabilities_are_not_in_the_bounding_set(cri: CriEnv) -> None:
    pod_id = cri.runp()
    dropped = cri.run(pod_id, cri.container("dropped", security_context={
        "capabilities": {"drop_capabilities": ["NET_RAW", "CHOWN"], "add_capabilities": ["SYS_TIME"]}}))
    default = cri.run(pod_id, cri.container("default"))

    caps = _capabilities(cri, dropped, "CapBnd")
    assert "CAP_NET_RAW" not in caps and "CAP_CHOWN" not in caps
    assert {"CAP_SYS_TIME", "CAP_KILL", "CAP_SETUID"} <= caps
    assert _capabilities(cri, dropped, "CapEff") == caps
    assert {"CAP_NET_RAW", "CAP_CHOWN"} <= _capabilities(cri, default, "CapBnd")
    assert "CAP_SYS_ADMIN" not in _capabilities(cri, default, "CapBnd")
    denied = cri.exec(dropped, "sh", "-c", "busybox chown 1000 /etc/hello.txt", check=False)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr
    cri.exec(default, "sh", "-c", "busybox chown 1000 /etc/hello.txt")


def test_memory_limit_ends_in_the_oom_killer(cri: CriEnv) -> None:
    pod_id = cri.runp()
    # tail keeps the whole (newline-free) last line of /dev/zero in memory: it grows until it is killed.
    container_id = cri.run(pod_id, cri.container(
        "hog", command=["sh", "-c", "echo filling; busybox tail /dev/zero"],
        resources={"memory_limit_in_bytes": 32 * MIB}))
    status = cri.wait_state(container_id, "CONTAINER_EXITED", timeout=30)
    assert status["exitCode"] == 137
    assert status["reason"] == "OOMKilled", (
        f"reason {status['reason']!r}; conmon created an 'oom' file in its working directory, not in the bundle "
        f"crishim looks in: {_stray_oom_files(cri)}")


def test_cpu_and_memory_limits_are_in_the_cgroup_and_can_be_updated(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("limited", resources={
        "cpu_period": 100000, "cpu_quota": 50000, "cpu_shares": 512, "memory_limit_in_bytes": 64 * MIB}))
    pid = cri.container_pid(container_id)
    assert _cgroup_value(pid, "cpu", "cpu.cfs_quota_us", "cpu.max") in ("50000", "50000 100000")
    assert _cgroup_value(pid, "cpu", "cpu.cfs_period_us", "cpu.max") in ("100000", "50000 100000")
    assert _cgroup_value(pid, "cpu", "cpu.shares", "cpu.weight") in ("512", "20")
    assert _cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max") == str(64 * MIB)
    # The cgroup is the one crishim names after the container (cgroupfs driver, no parent: /k8s.io/<id>).
    assert _cgroup_path(pid, "memory").endswith(f"/k8s.io/{container_id}")

    cri.crictl("update", "--memory", str(96 * MIB), "--cpu-quota", "20000", container_id)
    assert _cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max") == str(96 * MIB)
    assert _cgroup_value(pid, "cpu", "cpu.cfs_quota_us", "cpu.max") in ("20000", "20000 100000")
    assert cri.exec(container_id, "true").returncode == 0


def test_updating_an_exited_container_is_accepted_as_by_containerd(cri: CriEnv) -> None:
    pod_id = cri.runp()
    container_id = cri.run(pod_id, cri.container("exited", command=["true"]))
    cri.wait_state(container_id, "CONTAINER_EXITED")
    cri.crictl("update", "--memory", str(128 * MIB), container_id)


# --- helpers -------------------------------------------------------------------------------------------------


def _status_field(env: CriEnv, container_id: str, field: str) -> str:
    for line in env.exec(container_id, "cat", "/proc/self/status").stdout.splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/self/status")


def _capabilities(env: CriEnv, container_id: str, field: str) -> set[str]:
    """The capability set of the container's main process, read from the host."""
    text = Path(f"/proc/{env.container_pid(container_id)}/status").read_text()
    bits = int(next(line for line in text.splitlines() if line.startswith(f"{field}:")).split()[1], 16)
    return {name for i, name in enumerate(KNOWN_CAPS) if bits >> i & 1}


def _cgroup_path(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (UNIFIED and controllers == "") or controller in controllers.split(","):
            return path
    raise AssertionError(f"process {pid} is in no {controller} cgroup")


def _cgroup_value(pid: int, controller: str, v1_file: str, v2_file: str) -> str:
    if UNIFIED:
        folder = CGROUP / _cgroup_path(pid, controller).lstrip("/")
        return (folder / v2_file).read_text().strip()
    folder = CGROUP / controller / _cgroup_path(pid, controller).lstrip("/")
    return (folder / v1_file).read_text().strip()


def _stray_oom_files(env: CriEnv) -> list[str]:
    candidates = [Path.cwd() / "oom", Path("/oom"), env.daemon.workdir / "oom"]
    return [str(p) for p in candidates if p.exists()]


