"""Garbage collection in the background, as containerd's scheduler runs it after a deletion.

A removal only drops names; the blobs and snapshots nothing refers to any more go in a collection that
runs on this thread, so RemoveImage answers at once however large the image. Requests made while a
collection runs coalesce into one more run. The thread starts on the first request, not in the
constructor, and ``close`` joins it. The same runner writes unpacked layers back to disk (``name``
"sync") after pulls commit them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

__all__ = ["BackgroundCollector"]

log = structlog.get_logger(__name__)


class BackgroundCollector:
    def __init__(self, collect: Callable[[], object], name: str = "gc") -> None:
        self._collect = collect
        self._name = name
        self._wanted = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for a collection soon; returns at once."""
        with self._lock:
            if self._closing:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wanted.set()

    def close(self) -> None:
        """Stop after the collection in progress, if any; a pending request is left to the next start."""
        with self._lock:
            self._closing = True
            thread = self._thread
            self._wanted.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            with self._lock:
                if self._closing:
                    return
                self._wanted.clear()
            try:
                self._collect()
            except Exception:
                # Logged with its traceback and retried on the next request; the thread must live on.
                log.exception(f"{self._name}.failed")
