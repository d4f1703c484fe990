"""A cancellation token: set when the caller gives up, checked by long work between its steps.

A cancelled pull stops downloading and unpacking at its next chunk or tar entry, drops its lease and keeps
its resumable ingests. Waiting (for a lock, a backoff) wakes when it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from errdefs import Cancelled

__all__ = ["Cancellation"]


class Cancellation:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "cancelled"
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self, reason: str = "the caller cancelled") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the token is set (now, if it is already)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def child(self) -> Cancellation:
        """A token set with this one, that can also be set alone (e.g. one pull's work, when one part fails)."""
        token = Cancellation()
        self.on_cancel(lambda: token.cancel(self._reason))
        return token

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Cancelled once the token is set."""
        if self._event.is_set():
            raise Cancelled(self._reason)

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Cancelled as soon as the token is set."""
        if self._event.wait(seconds):
            raise Cancelled(self._reason)
