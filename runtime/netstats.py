"""Traffic counters of the interfaces in a pod's network namespace, for PodSandboxStats.

Read from ``/proc/<pid>/net/dev`` of a process in the namespace (checked to be in it, so a recycled pid cannot
answer for another namespace); when none runs, the pinned namespace file is entered with nsenter (a thread of
the daemon must never change namespace), so pods with no process left still answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InterfaceStats", "NetworkStats", "network_stats", "parse_net_dev"]

DEFAULT_INTERFACE = "eth0"  # the interface CNI attaches the pod's network to
_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class InterfaceStats:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True, slots=True)
class NetworkStats:
    timestamp: int  # ns since the epoch
    default: InterfaceStats | None  # eth0, None if the pod has none
    others: tuple[InterfaceStats, ...]  # every other interface but the loopback


def network_stats(netns: Path, pids: Iterable[int] = ()) -> NetworkStats | None:
    """None when the namespace is gone (a stopped pod) or cannot be read; ``pids`` may be in it."""
    text = _from_process(netns, pids)
    if text is None:
        text = _from_nsenter(netns)
    if text is None:
        return None
    interfaces = [i for i in parse_net_dev(text) if i.name != "lo"]
    default = next((i for i in interfaces if i.name == DEFAULT_INTERFACE), None)
    return NetworkStats(time.time_ns(), default, tuple(i for i in interfaces if i is not default))


def _from_process(netns: Path, pids: Iterable[int]) -> str | None:
    try:
        wanted = os.stat(netns)
    except FileNotFoundError:
        return None
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/net/dev").read_text()
            # Checked after the read: had the pid been recycled meanwhile, its namespace would differ now.
            found = os.stat(f"/proc/{pid}/ns/net")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino):
            return text
    return None


def _from_nsenter(netns: Path) -> str | None:
    nsenter = shutil.which("nsenter")
    if nsenter is None or not netns.exists():
        return None
    try:
        result = subprocess.run([nsenter, f"--net={netns}", "--", "cat", "/proc/net/dev"], capture_output=True,
                                text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    return result.stdout if result.returncode == 0 else None


def parse_net_dev(text: str) -> list[InterfaceStats]:
    """The rows of /proc/net/dev: after two header lines, ``name: rx bytes packets errs ... tx bytes packets errs``."""
    found = []
    for line in text.splitlines()[2:]:
        name, sep, counters = line.partition(":")
        fields = counters.split()
        if not sep or len(fields) < 16:
            continue
        found.append(InterfaceStats(name.strip(), int(fields[0]), int(fields[2]), int(fields[8]), int(fields[10])))
    return found
