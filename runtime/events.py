"""Container lifecycle events for GetContainerEvents: every subscriber gets every event from its start on.

A pod sandbox has events of its own, as in containerd: created and started once it is ready, stopped when it
is no longer ready, deleted when it is removed, each with the pod's id as its container id. kubelet's evented
PLEG learns from them that a pod stopped (else its cache keeps the pod ready, and a pod brought back with the
same UID is given containers in a sandbox that is gone) and that it may drop the pod.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from runtime.records import SandboxRecord

__all__ = ["Event", "EventBus"]


@dataclass(frozen=True, slots=True)
class Event:
    container_id: str  # the pod's own id for a pod's events
    kind: str  # "created", "started", "stopped", "deleted"
    created_at: int  # ns since the epoch
    sandbox_id: str
    # A pod's events: the pod as the event left it, for a pod that is gone by the time the event is sent.
    sandbox: SandboxRecord | None = None


class EventBus:
    def __init__(self, backlog: int = 1024) -> None:
        self._subscribers: list[queue.Queue[Event | None]] = []
        self._lock = threading.Lock()
        self._backlog = backlog

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            # A subscriber that stopped reading loses events rather than blocking the runtime.
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def subscribe(self, alive: threading.Event | None = None, poll: float = 0.5) -> Iterator[Event]:
        """Events as they happen, until ``alive`` is cleared (e.g. the RPC was cancelled)."""
        q: queue.Queue[Event | None] = queue.Queue(self._backlog)
        with self._lock:
            self._subscribers.append(q)
        try:
            while alive is None or alive.is_set():
                try:
                    event = q.get(timeout=poll)
                except queue.Empty:
                    continue
                if event is None:
                    return
                yield event
        finally:
            with self._lock:
                self._subscribers.remove(q)

    def close(self) -> None:
        with self._lock:
            for q in self._subscribers:
                with contextlib.suppress(queue.Full):
                    q.put_nowait(None)
