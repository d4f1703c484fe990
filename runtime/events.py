"""Container lifecycle events for GetContainerEvents: every subscriber gets every event from its start on."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Event", "EventBus"]


@dataclass(frozen=True, slots=True)
class Event:
    container_id: str
    kind: str  # "created", "started", "stopped", "deleted"
    created_at: int  # ns since the epoch
    sandbox_id: str


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
