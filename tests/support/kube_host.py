"""What a kubelet would change on the host, and how the tests keep it from doing so or undo it.

kubelet sets kernel tunables at start (container_manager_linux.go, setupKernelTunables) and, unless
``makeIPTablesUtilChains`` is false, adds KUBE-* chains with jumps from INPUT/OUTPUT. It makes its QoS cgroups
under ``cgroupRoot`` in every v1 hierarchy (which must exist first), links container logs into
/var/log/containers (a fixed path), and mounts tmpfs volumes under its root dir, which crishim — in the
host's mount namespace — must see.

So kubelet runs in a mount namespace of its own where the tunables are bound from plain files (what it
writes lands there), its root dir is a shared bind mount (its volume mounts propagate back to the host), and
the cgroups and log links it made are removed afterwards.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.mounts import unmount_under
from tests.support.procs import run

__all__ = [
    "CGROUP_ROOT",
    "CONTAINER_LOGS",
    "KERNEL_TUNABLES",
    "SysctlShadow",
    "cgroup_root",
    "kube_iptables_rules",
    "remove_log_links",
    "shared_root_dir",
    "sysctl_shadow",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOGS = Path("/var/log/containers")
# The ones kubelet writes when they differ from what it wants (vm.overcommit_memory=1, kernel.panic=10, ...).
KERNEL_TUNABLES = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)
_PROC_SYS = Path("/proc/sys")
# kubelet puts its device-plugin socket under this fixed path, whatever --root-dir says.
FIXED_KUBELET_DIR = Path("/var/lib/kubelet")


@dataclass(frozen=True, slots=True)
class SysctlShadow:
    """Plain files standing in for kernel tunables inside kubelet's mount namespace, and a folder standing in
    for /var/lib/kubelet there."""

    folder: Path
    host_values: dict[str, str]  # as read before kubelet started

    def shadow(self, tunable: str) -> Path:
        return self.folder / tunable.replace("/", ".")

    @property
    def fixed_dir(self) -> Path:
        return self.folder / "var-lib-kubelet"

    def written(self) -> dict[str, str]:
        return {t: self.shadow(t).read_text().strip() for t in KERNEL_TUNABLES}

    def host_now(self) -> dict[str, str]:
        return _read_tunables()

    def wrap(self, command: list[str]) -> list[str]:
        """command run in a new mount namespace with the tunables bound from the shadow files.

        Propagation is left unchanged so shared mounts (the kubelet root dir) stay shared with the host;
        the mount holding /proc/sys is made private first, so the binds never reach the host."""
        script = ["set -e"]
        for tunable in KERNEL_TUNABLES:
            target = _PROC_SYS / tunable
            script.append(f"mount --make-private \"$(findmnt -n -o TARGET -T {target})\"")
            script.append(f"mount --bind {shlex.quote(str(self.shadow(tunable)))} {target}")
        script.append(f"mount --make-private \"$(findmnt -n -o TARGET -T {FIXED_KUBELET_DIR})\"")
        script.append(f"mount --bind {shlex.quote(str(self.fixed_dir))} {FIXED_KUBELET_DIR}")
        script.append('exec "$@"')
        return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", "\n".join(script),
                "kubelet-in-namespace", *command]


def _read_tunables() -> dict[str, str]:
    return {t: (_PROC_SYS / t).read_text().strip() for t in KERNEL_TUNABLES}


def sysctl_shadow(folder: Path) -> SysctlShadow:
    folder.mkdir(parents=True, exist_ok=True)
    shadow = SysctlShadow(folder, _read_tunables())
    shadow.fixed_dir.mkdir(exist_ok=True)
    for tunable, value in shadow.host_values.items():
        shadow.shadow(tunable).write_text(value + "\n")
    return shadow


@contextlib.contextmanager
def fixed_dir_mountpoint() -> Iterator[None]:
    """/var/lib/kubelet on the host, for the bind in kubelet's namespace to cover; removed again afterwards
    when it was not there before, so the host is left as it was."""
    made = not FIXED_KUBELET_DIR.exists()
    FIXED_KUBELET_DIR.mkdir(exist_ok=True)
    try:
        yield
    finally:
        if made:
            FIXED_KUBELET_DIR.rmdir()


def kube_iptables_rules() -> list[str]:
    """Every KUBE-* chain and rule in the tables kubelet touches, for a before/after comparison that other
    test runs' CNI rules cannot disturb."""
    found = []
    for table in ("filter", "nat", "mangle"):
        lines = run("iptables", "-w", "-t", table, "-S").stdout.splitlines()
        found += [f"{table}: {line}" for line in lines if "KUBE-" in line]
    return found


def _hierarchies() -> list[Path]:
    # cpu and cpuacct are often symlinks to "cpu,cpuacct": each real hierarchy once.
    return sorted({p.resolve() for p in CGROUP_ROOT.iterdir() if p.is_dir()})


@contextlib.contextmanager
def cgroup_root(name: str) -> Iterator[str]:
    """``/<name>`` in every v1 hierarchy, removed with everything kubelet made under it on exit."""
    made = []
    try:
        for hierarchy in _hierarchies():
            folder = hierarchy / name
            folder.mkdir()
            made.append(folder)
        yield f"/{name}"
    finally:
        left = [str(folder) for folder in made if not _remove_tree(folder)]
        if left:
            raise AssertionError("cgroups still in use after every pod was removed: " + ", ".join(left))


def _remove_tree(folder: Path) -> bool:
    if not folder.exists():
        return True
    children = sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for child in [*children, folder]:
        with contextlib.suppress(FileNotFoundError):
            try:
                child.rmdir()
            except OSError:
                return False
    return True


@contextlib.contextmanager
def shared_root_dir(folder: Path) -> Iterator[Path]:
    """folder as a shared bind mount of itself: mounts made under it in another namespace show up here."""
    folder.mkdir(parents=True, exist_ok=True)
    run("mount", "--bind", folder, folder)
    try:
        run("mount", "--make-shared", folder)
        yield folder
    finally:
        unmount_under(folder)


def remove_log_links(pod_logs: Path, existed: bool) -> list[str]:
    """Remove the /var/log/containers links into pod_logs (and the folder if kubelet made it); returns them."""
    if not CONTAINER_LOGS.is_dir():
        return []
    removed = []
    for link in CONTAINER_LOGS.iterdir():
        if link.is_symlink() and str(link.readlink()).startswith(str(pod_logs) + "/"):
            link.unlink()
            removed.append(link.name)
    if not existed:
        with contextlib.suppress(OSError):
            CONTAINER_LOGS.rmdir()
    return removed
