"""Noticing that a container's conmon exited, by pidfd: one thread asleep in the kernel, however many containers.

conmon writes the container's exit file and then exits, so the moment its pidfd turns readable is the moment
to read the exit code. A conmon that dies without writing one (kill -9) is noticed the same way. Nothing
here polls, so an idle node with a hundred containers costs no more CPU than one with none.

``watch`` may be called from any thread; the callback runs on the watcher's thread, one exit at a time, and
an exception it raises is logged, never the end of the thread. ``close`` wakes the thread and joins it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from collections.abc import Callable

import structlog

__all__ = ["ExitWatcher"]

log = structlog.get_logger(__name__)


class ExitWatcher:
    def __init__(self, on_exit: Callable[[str], None]) -> None:
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._pending: list[tuple[str, int | None]] = []  # (container id, pidfd or None: gone already)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        self._thread.start()

    def watch(self, container_id: str, pidfd: int | None) -> None:
        """Call ``on_exit(container_id)`` once the process behind ``pidfd`` exits (now if ``pidfd`` is None).

        The watcher owns ``pidfd`` from here on and closes it.
        """
        with self._lock:
            if self._closing or self._thread is None:
                if pidfd is not None:
                    os.close(pidfd)
                return
            self._pending.append((container_id, pidfd))
        self._wake()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is None:
            return
        self._wake()
        thread.join()
        with self._lock:
            pending, self._pending = self._pending, []
        for fd in [pidfd for _, pidfd in pending if pidfd is not None] + [self._wake_r, self._wake_w]:
            os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            try:
                while not self._closing:
                    for key, _ in selector.select():
                        if key.data is None:
                            self._drain_wake()
                        else:
                            selector.unregister(key.fd)
                            os.close(key.fd)
                            self._notify(key.data)
                    self._take_pending(selector)
            finally:
                for key in list(selector.get_map().values()):
                    if key.data is not None:
                        os.close(key.fd)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _take_pending(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for container_id, pidfd in pending:
            if pidfd is None:
                self._notify(container_id)
            else:
                selector.register(pidfd, selectors.EVENT_READ, container_id)

    def _notify(self, container_id: str) -> None:
        try:
            self._on_exit(container_id)
        except Exception:
            log.exception("container.exit_handling_failed", container=container_id)
