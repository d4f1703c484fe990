"""CPU and memory usage of a container's or a pod's cgroup, on cgroup v1 or v2, and CPU rates between samples.

A container's cgroup is found from its init process (/proc/<pid>/cgroup), so it works whatever cgroup parent
kubelet chose; a pod's is its cgroup parent (cgroupfs paths, the driver crishim reports).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupStats", "CpuRates", "cgroup_stats", "parent_cgroup_stats"]

_ROOT = Path("/sys/fs/cgroup")
# Hybrid hosts list a "0::" line too, but keep the controllers on v1 hierarchies.
_UNIFIED = (_ROOT / "cgroup.controllers").exists()
# A limit above this is "no limit": the kernel rounds its maximum down to a page (containerd's bound).
_UNLIMITED = 1 << 62
# Enough for memory.stat, the largest file read, whole: cgroup files answer a read in one go.
_READ_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class CgroupStats:
    timestamp: int  # ns since the epoch
    cpu_usage_ns: int
    memory_usage: int
    memory_working_set: int
    memory_rss: int
    page_faults: int
    major_page_faults: int
    memory_limit: int | None  # None when unlimited
    process_count: int | None  # None without a pids controller

    @property
    def memory_available(self) -> int:
        """The limit less the working set, as kubelet and containerd define it; 0 without a limit."""
        return 0 if self.memory_limit is None else max(0, self.memory_limit - self.memory_working_set)


def cgroup_stats(pid: int) -> CgroupStats | None:
    """None when the process (and so its cgroup) is gone."""
    try:
        paths = _cgroup_paths(pid)
        if _UNIFIED:
            return _v2(f"{_ROOT}{paths['']}")
        return _v1(f"{_ROOT}/cpuacct{paths['cpuacct']}", f"{_ROOT}/memory{paths['memory']}",
                   f"{_ROOT}/pids{paths.get('pids', '/nonexistent')}")
    except (FileNotFoundError, ProcessLookupError, KeyError, ValueError):
        return None


def parent_cgroup_stats(parent: str) -> CgroupStats | None:
    """The usage of a cgroupfs parent (a pod's cgroup), None when it does not exist."""
    relative = parent.strip("/")
    if not relative or ".." in relative.split("/"):
        return None
    try:
        if _UNIFIED:
            return _v2(f"{_ROOT}/{relative}")
        return _v1(f"{_ROOT}/cpuacct/{relative}", f"{_ROOT}/memory/{relative}", f"{_ROOT}/pids/{relative}")
    except (FileNotFoundError, ValueError):
        return None


class CpuRates:
    """CPU use in nanocores between one sample of a cgroup and the one before it, as containerd computes it.

    Only the last sample per key is kept, in memory: the first sample of a key (and the first after a restart)
    gives 0. Samples not renewed for ``forget_after`` seconds (containers and pods that are gone) are dropped.
    """

    def __init__(self, forget_after: float = 600.0) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # key -> (usage ns, timestamp ns)
        self._lock = threading.Lock()
        self._forget_after_ns = int(forget_after * 1e9)
        self._swept = 0

    def rate(self, key: str, usage_ns: int, timestamp: int) -> int:
        with self._lock:
            previous = self._last.get(key)
            if previous is None or timestamp > previous[1]:
                self._last[key] = (usage_ns, timestamp)
            self._sweep(timestamp)
        if previous is None or timestamp <= previous[1] or usage_ns < previous[0]:
            return 0
        return int((usage_ns - previous[0]) / (timestamp - previous[1]) * 1_000_000_000)

    def _sweep(self, now: int) -> None:
        if now - self._swept < self._forget_after_ns // 10:
            return
        self._swept = now
        for key in [k for k, (_, seen) in self._last.items() if now - seen > self._forget_after_ns]:
            del self._last[key]


def _cgroup_paths(pid: int) -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _v1(cpuacct: str, memory: str, pids: str) -> CgroupStats:
    stat = _keyed(f"{memory}/memory.stat")
    usage = int(_read(f"{memory}/memory.usage_in_bytes"))
    inactive = stat.get("total_inactive_file", 0)
    return CgroupStats(
        timestamp=time.time_ns(),
        cpu_usage_ns=int(_read(f"{cpuacct}/cpuacct.usage")),
        memory_usage=usage,
        memory_working_set=max(0, usage - inactive),
        memory_rss=stat.get("total_rss", 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
        memory_limit=_limit(_read(f"{memory}/memory.limit_in_bytes")),
        process_count=_optional_count(f"{pids}/pids.current"),
    )


def _v2(group: str) -> CgroupStats:
    stat = _keyed(f"{group}/memory.stat")
    usage = int(_read(f"{group}/memory.current"))
    return CgroupStats(
        timestamp=time.time_ns(),
        cpu_usage_ns=_keyed(f"{group}/cpu.stat")["usage_usec"] * 1000,
        memory_usage=usage,
        memory_working_set=max(0, usage - stat.get("inactive_file", 0)),
        memory_rss=stat.get("anon", 0),
        page_faults=stat.get("pgfault", 0),
        major_page_faults=stat.get("pgmajfault", 0),
        memory_limit=_limit(_read(f"{group}/memory.max")),
        process_count=_optional_count(f"{group}/pids.current"),
    )


def _limit(text: str) -> int | None:
    text = text.strip()
    if text == "max":
        return None
    value = int(text)
    return None if value > _UNLIMITED else value


def _optional_count(path: str) -> int | None:
    try:
        return int(_read(path))
    except FileNotFoundError:
        return None


def _keyed(path: str) -> dict[str, int]:
    """The numbers of a flat keyed file (memory.stat, cpu.stat): "key value" lines."""
    words = _read(path).split()
    values = {}
    for key, value in zip(words[::2], words[1::2], strict=False):
        if value.isdigit():
            values[key] = int(value)
    return values


def _read(path: str) -> str:
    """A small kernel file, in one read: ListContainerStats reads six per container, and the file objects
    pathlib makes for each cost three times the reading (a thousand containers: 90 ms instead of 30)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, _READ_SIZE).decode()
    finally:
        os.close(fd)
