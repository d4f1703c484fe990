"""CPU time of processes, from /proc/PID/stat."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds"]


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User plus system time of the process (all its threads) so far; with ``children``, also that of the
    children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, then cutime, cstime (proc(5), fields 14-17).
    return sum(int(f) for f in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")
