"""What a container's spec depends on in the host, probed once when the daemon starts (``HostFacts.probe``)."""

from __future__ import annotations

import os
import platform
import posixpath
import socket
from dataclasses import dataclass
from pathlib import Path

from runtime import lsm, seccomp

__all__ = ["DEFAULT_CAPS", "KNOWN_CAPS", "HostFacts"]

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
            capabilities=effective_capabilities(),
            hostname=socket.gethostname(),
            cgroup_v2=v2,
            swap_controller=_swap_controller(v2),
            hugetlb_controller=hugetlb_controller(v2),
            oom_score_adj=_own_oom_score_adj(),
            machine=platform.machine(),
            kernel=seccomp.kernel_version(),
            lsms=lsm.probe(),
        )


def effective_capabilities(status: str = "/proc/self/status") -> tuple[str, ...]:
    try:
        for line in Path(status).read_text().splitlines():
            if line.startswith("CapEff:"):
                bits = int(line.split(":", 1)[1], 16)
                return tuple(name for i, name in enumerate(KNOWN_CAPS) if bits >> i & 1)
    except (OSError, ValueError):
        pass
    return ()


def hugetlb_controller(v2: bool, root: Path = Path("/sys/fs/cgroup")) -> bool:
    if not v2:
        # Mounted, not merely a folder: in a container (a kind node) the folders of every controller the
        # kernel knows can exist without the hierarchy behind them.
        return (root / "hugetlb" / "cgroup.procs").exists()
    try:
        return "hugetlb" in (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


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


def _own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text().strip())
    except (OSError, ValueError):
        return 0
