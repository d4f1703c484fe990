"""Metrics read at scrape time rather than counted: objects by state, disk usage, build, threads.

Each is a prometheus_client collector whose ``describe`` reads nothing, so registering one does no I/O;
``collect`` runs on the metrics server's thread for every scrape and only reads. Walking every blob and
every snapshot's files costs as much as the store is large, so ``DiskUsage`` keeps its answer for
``max_age`` seconds unless told, with ``invalidate``, that a pull, removal or collection changed it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from errdefs import NotFound
from runtime.records import ContainerState, SandboxState
from snapshotters import Snapshotter
from snapshotters.snapshotter import Info

__all__ = ["BuildInfo", "DiskUsage", "ObjectStates", "ProcessThreads"]

_CONTAINER_STATES = (ContainerState.CREATED, ContainerState.RUNNING, ContainerState.EXITED, ContainerState.UNKNOWN)
_SANDBOX_STATES = (SandboxState.READY, SandboxState.NOTREADY)


class ObjectStates(Collector):
    """Containers and pod sandboxes by state, counted from the store at each scrape."""

    def __init__(self, container_states: Callable[[], Iterable[str]],
                 sandbox_states: Callable[[], Iterable[str]]) -> None:
        self._container_states = container_states
        self._sandbox_states = sandbox_states

    def describe(self) -> Iterator[Metric]:
        yield _containers()
        yield _sandboxes()

    def collect(self) -> Iterator[Metric]:
        yield _by_state(_containers(), _CONTAINER_STATES, self._container_states())
        yield _by_state(_sandboxes(), _SANDBOX_STATES, self._sandbox_states())


def _containers() -> GaugeMetricFamily:
    return GaugeMetricFamily("crishim_containers", "Containers by state (created, running, exited, unknown).",
                             labels=["state"])


def _sandboxes() -> GaugeMetricFamily:
    return GaugeMetricFamily("crishim_pod_sandboxes", "Pod sandboxes by state (ready, notready).", labels=["state"])


def _by_state(family: GaugeMetricFamily, states: Iterable[str], found: Iterable[str]) -> GaugeMetricFamily:
    counts = Counter(found)
    for state in states:
        family.add_metric([state], counts.pop(state, 0))
    for state, count in counts.items():  # a state added to the records but not here still shows
        family.add_metric([state], count)
    return family


@dataclass(frozen=True, slots=True)
class _Usage:
    content_bytes: int
    content_blobs: int
    snapshot_bytes: Mapping[str, int]
    snapshots: Mapping[str, int]
    taken_at: float


class DiskUsage(Collector):
    """Bytes and counts of content blobs and snapshots, and the size and room of the root's filesystem."""

    def __init__(self, root: Path, content_usage: Callable[[], tuple[int, int]],
                 snapshotters: Mapping[str, Snapshotter], max_age: float = 300.0) -> None:
        self._root = root
        self._content_usage = content_usage
        self._snapshotters = snapshotters
        self._max_age = max_age
        self._lock = threading.Lock()
        self._cached: _Usage | None = None

    def invalidate(self) -> None:
        """The store changed: the next scrape measures again."""
        with self._lock:
            self._cached = None

    def describe(self) -> Iterator[Metric]:
        yield from _usage_families()
        yield from _filesystem_families()

    def collect(self) -> Iterator[Metric]:
        usage = self._usage()
        content_bytes, content_blobs, snapshot_bytes, snapshots = _usage_families()
        content_bytes.add_metric([], usage.content_bytes)
        content_blobs.add_metric([], usage.content_blobs)
        for name in sorted(usage.snapshots):
            snapshot_bytes.add_metric([name], usage.snapshot_bytes[name])
            snapshots.add_metric([name], usage.snapshots[name])
        yield from (content_bytes, content_blobs, snapshot_bytes, snapshots)
        size, available = _filesystem_families()
        # statfs is one system call: always fresh.
        disk = shutil.disk_usage(self._root)
        size.add_metric([], disk.total)
        available.add_metric([], disk.free)
        yield from (size, available)

    def _usage(self) -> _Usage:
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached.taken_at < self._max_age:
                return cached
            # Under the lock: two scrapes at once walk the store once.
            self._cached = self._measure()
            return self._cached

    def _measure(self) -> _Usage:
        content_bytes, content_blobs = self._content_usage()
        snapshot_bytes, snapshots = {}, {}
        for name, sn in self._snapshotters.items():
            snapshot_bytes[name], snapshots[name] = _snapshot_usage(sn)
        return _Usage(content_bytes, content_blobs, snapshot_bytes, snapshots, time.monotonic())


def _snapshot_usage(sn: Snapshotter) -> tuple[int, int]:
    infos: list[Info] = []
    sn.walk(infos.append)
    total = 0
    for info in infos:
        with contextlib.suppress(NotFound):  # removed while we add up
            total += sn.usage(info.name).size
    return total, len(infos)


def _usage_families() -> tuple[GaugeMetricFamily, ...]:
    note = " (measured at most every few minutes, and after each pull, removal and collection)"
    return (
        GaugeMetricFamily("crishim_content_bytes", "Bytes of the content store's blobs" + note + "."),
        GaugeMetricFamily("crishim_content_blobs", "Blobs in the content store" + note + "."),
        GaugeMetricFamily("crishim_snapshot_bytes",
                          "Bytes snapshots use on disk, by snapshotter" + note + ".", labels=["snapshotter"]),
        GaugeMetricFamily("crishim_snapshots", "Snapshots, active and committed, by snapshotter" + note + ".",
                          labels=["snapshotter"]),
    )


def _filesystem_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("crishim_root_filesystem_size_bytes", "Size of the filesystem holding crishim's root."),
        GaugeMetricFamily("crishim_root_filesystem_available_bytes",
                          "Bytes free on the filesystem holding crishim's root."),
    )


class BuildInfo(Collector):
    """``crishim_build_info{version, revision} 1``, for joining on and for spotting a mixed fleet."""

    def __init__(self, version: str, revision: str) -> None:
        self._version = version
        self._revision = revision

    def describe(self) -> Iterator[Metric]:
        yield _build_info()

    def collect(self) -> Iterator[Metric]:
        family = _build_info()
        family.add_metric([self._version, self._revision], 1)
        yield family


def _build_info() -> GaugeMetricFamily:
    return GaugeMetricFamily("crishim_build_info", "crishim's version and the git commit it was built from; always 1.",
                             labels=["version", "revision"])


class ProcessThreads(Collector):
    """The daemon's threads as the kernel counts them: grpc's own threads as well as Python's."""

    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self._status = proc / "status"

    def describe(self) -> Iterator[Metric]:
        yield _threads()

    def collect(self) -> Iterator[Metric]:
        family = _threads()
        with contextlib.suppress(OSError, ValueError):
            for line in self._status.read_text().splitlines():
                if line.startswith("Threads:"):
                    family.add_metric([], int(line.split()[1]))
        yield family


def _threads() -> GaugeMetricFamily:
    return GaugeMetricFamily("process_threads", "Threads of the daemon's process.")
