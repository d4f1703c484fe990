"""CPU and memory usage of a container's cgroup, on cgroup v1 or v2.

The cgroup is found from the container's init process (/proc/<pid>/cgroup), so
it works whatever cgroup parent kubelet chose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupStats", "cgroup_stats"]

_ROOT = Path("/sys/fs/cgroup")
# Hybrid hosts list a "0::" line too, but keep the controllers on v1 hierarchies.
_UNIFIED = (_ROOT / "cgroup.controllers").exists()


@dataclass(frozen=True, slots=True)
class CgroupStats:
    timestamp: int  # ns since the epoch
    cpu_usage_ns: int
    memory_usage: int
    memory_working_set: int
    memory_rss: int
    page_faults: int
    major_page_faults: int


def cgroup_stats(pid: int) -> CgroupStats | None:
    """None when the process (and so its cgroup) is gone."""
    try:
        paths = _cgroup_paths(pid)
        if _UNIFIED:
            return _v2(_ROOT / paths[""].lstrip("/"))
        return _v1(_ROOT / "cpuacct" / paths["cpuacct"].lstrip("/"), _ROOT / "memory" / paths["memory"].lstrip("/"))
    except (FileNotFoundError, ProcessLookupError, KeyError, ValueError):
        return None


def _cgroup_paths(pid: int) -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _v1(cpuacct: Path, memory: Path) -> CgroupStats:
    stat = _keyed(memory / "memory.stat")
    usage = int((memory / "memory.usage_in_bytes").read_text())
    inactive = stat.get("total_inactive_file", 0)
    return CgroupStats(
        timestamp=time.time_ns(),
        cpu_usage_ns=int((cpuacct / "cpuacct.usage").read_text()),
        memory_usage=usage,
        memory_working_set=max(0, usage - inactive),
        memory_rss=stat.get("total_rss", 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
    )


def _v2(group: Path) -> CgroupStats:
    stat = _keyed(group / "memory.stat")
    usage = int((group / "memory.current").read_text())
    return CgroupStats(
        timestamp=time.time_ns(),
        cpu_usage_ns=_keyed(group / "cpu.stat")["usage_usec"] * 1000,
        memory_usage=usage,
        memory_working_set=max(0, usage - stat.get("inactive_file", 0)),
        memory_rss=stat.get("anon", 0),
        page_faults=stat.get("pgfault", 0),
        major_page_faults=stat.get("pgmajfault", 0),
    )


def _keyed(path: Path) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values
