"""Traffic counters of the interfaces in a pod's network namespace, for PodSandboxStats.

Read from ``/proc/net/dev`` as seen from inside the namespace: the pinned namespace file is entered with
nsenter (a thread of the daemon must never change namespace), so pods with no process left still answer.
"""

from __future__ import annotations

import shutil
import subprocess
import time
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


def network_stats(netns: Path) -> NetworkStats | None:
    """None when the namespace is gone (a stopped pod) or cannot be read."""
    nsenter = shutil.which("nsenter")
    if nsenter is None or not netns.exists():
        return None
    try:
        result = subprocess.run([nsenter, f"--net={netns}", "--", "cat", "/proc/net/dev"], capture_output=True,
                                text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    interfaces = [i for i in parse_net_dev(result.stdout) if i.name != "lo"]
    default = next((i for i in interfaces if i.name == DEFAULT_INTERFACE), None)
    return NetworkStats(time.time_ns(), default, tuple(i for i in interfaces if i is not default))


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
