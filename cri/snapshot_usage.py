"""What the CRI snapshotter's snapshots use on disk, measured in the background as containerd's CRI does (its
snapshots syncer, every ``stats_collect_period``).

ImageFsInfo and the writable layers in container stats read the last measurement: measuring an Active
snapshot walks its whole folder, and a node running a thousand containers would otherwise walk a thousand
writable layers on every ImageFsInfo and ListContainerStats.

A pass lists the snapshots and measures each Active one (a writable layer, or a layer being unpacked); a
Committed snapshot never changes, so its recorded usage is read once. A snapshot a pass does not find is
forgotten. Passes run every ``period`` seconds, and soon after ``request`` (the store changed: a pull, a
removal, a collection). A snapshot asked for before any pass saw it (a container just created) is measured
on that request and kept until the next pass; totals asked for before the first pass wait for one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from errdefs import NotFound
from snapshotters import Snapshotter
from snapshotters.snapshotter import Info, Kind, Usage

__all__ = ["FolderUsage", "Measured", "SnapshotUsage"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Measured:
    """One snapshot's usage as last measured."""

    usage: Usage
    folder: str  # the snapshotter's folder holding it (root or writable root), whose filesystem kubelet measures
    kind: Kind
    timestamp: int  # ns since the epoch


@dataclass(frozen=True, slots=True)
class FolderUsage:
    """What the snapshots in one of the snapshotter's folders use together."""

    usage: Usage
    timestamp: int  # ns since the epoch: the newest measurement added up (or of the last pass, for none)


class SnapshotUsage:
    def __init__(self, snapshotter: Snapshotter, period: float) -> None:
        self._sn = snapshotter
        self._period = period
        self._measured: dict[str, Measured] = {}
        self._passed_at: int | None = None  # ns since the epoch; None before the first pass
        self._lock = threading.Lock()  # guards the two above
        self._pass_lock = threading.Lock()  # one pass at a time
        self._wanted = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Measure now and every ``period`` seconds, on a thread of its own, until ``close``."""
        self._thread = threading.Thread(target=self._run, name="snapshot-usage", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """The store changed: measure again soon; returns at once."""
        self._wanted.set()

    def close(self) -> None:
        self._closing = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()

    def get(self, key: str) -> Measured:
        """Snapshot ``key``'s last measurement, made now if no pass has seen it; NotFound if there is no such
        snapshot."""
        measured = self._measured.get(key)
        if measured is not None:
            return measured
        measured = self._measure(self._sn.stat(key))
        with self._lock:
            self._measured[key] = measured
        return measured

    def by_folder(self) -> Mapping[str, FolderUsage]:
        """Totals by the folder holding the snapshots (``root`` and ``writable_root`` of the snapshotter)."""
        if self._passed_at is None:
            self._first_pass()
        with self._lock:
            measured, passed_at = list(self._measured.values()), self._passed_at or 0
        sizes: defaultdict[str, int] = defaultdict(int)
        inodes: defaultdict[str, int] = defaultdict(int)
        newest: defaultdict[str, int] = defaultdict(int)
        for m in measured:
            sizes[m.folder] += m.usage.size
            inodes[m.folder] += m.usage.inodes
            newest[m.folder] = max(newest[m.folder], m.timestamp)
        folders = {self._sn.root, self._sn.writable_root, *sizes}
        return {folder: FolderUsage(Usage(sizes[folder], inodes[folder]), newest[folder] or passed_at)
                for folder in folders}

    def refresh(self) -> None:
        """One pass: every snapshot listed, the Active ones measured."""
        with self._pass_lock:
            self._pass()

    def _first_pass(self) -> None:
        with self._pass_lock:
            if self._passed_at is None:  # not made by whoever held the lock before
                self._pass()

    def _pass(self) -> None:
        started = time.time_ns()
        infos: list[Info] = []
        self._sn.walk(infos.append)
        known = self._measured
        fresh: dict[str, Measured] = {}
        for info in infos:
            previous = known.get(info.name)
            if previous is not None and previous.kind == info.kind == Kind.COMMITTED:
                fresh[info.name] = previous
                continue
            # A snapshot stays in its folder while its key lives (a commit moves it under another key).
            folder = previous.folder if previous is not None and previous.kind == info.kind else None
            with contextlib.suppress(NotFound):  # removed since the listing
                fresh[info.name] = self._measure(info, folder)
        with self._lock:
            self._measured = fresh
            self._passed_at = started

    def _measure(self, info: Info, folder: str | None = None) -> Measured:
        usage = self._sn.usage(info.name)
        return Measured(usage, folder or self._sn.location(info.name), info.kind, time.time_ns())

    def _run(self) -> None:
        while not self._closing:
            try:
                self.refresh()
            except Exception:
                # Logged with its traceback; the next pass tries again, the thread must live on.
                log.exception("snapshot_usage.failed")
            self._wanted.wait(self._period)
            self._wanted.clear()
