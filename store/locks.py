"""One lock per key (an ingest ref, a chain ID, a pod or container id), kept only while someone holds it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from errdefs import Unavailable

if TYPE_CHECKING:
    from store.cancel import Cancellation

__all__ = ["KeyedLocks"]


@dataclass(slots=True)
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    @contextmanager
    def hold(self, key: str, cancel: Cancellation | None = None, wait: bool = True) -> Iterator[None]:
        """Hold ``key``'s lock; with ``cancel``, the wait ends when it is set; without ``wait``, a key
        someone holds is Unavailable at once (containerd's "ref locked")."""
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            _acquire(entry.lock, key, cancel, wait)
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)


# How often a cancellable wait looks at its token; only while it waits.
_CANCEL_POLL = 0.1


def _acquire(lock: threading.Lock, key: str, cancel: Cancellation | None, wait: bool) -> None:
    if not wait:
        if not lock.acquire(blocking=False):
            raise Unavailable(f"{key!r} is locked: another writer holds it")
        return
    if cancel is None:
        lock.acquire()
        return
    while not lock.acquire(timeout=_CANCEL_POLL):
        cancel.check()
