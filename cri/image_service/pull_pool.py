"""Pulls run on their own bounded pool, so no number of slow or hung pulls can take the RPC threads.

At most ``running`` pulls download and unpack at once; up to ``waiting`` more queue for a turn. A pull
beyond both is refused at once with ResourceExhausted (kubelet retries it with back-off), so the RPC
pool always has threads left for Version, List and Status. The RPC's thread only waits: when the caller
cancels or its deadline passes, the pull's token is set, the RPC answers CANCELLED at once, and the pull
stops at its next chunk on its own thread (a queued one never starts).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from errdefs import Cancelled, ResourceExhausted
from store.cancel import Cancellation

__all__ = ["PullPool"]

T = TypeVar("T")


class PullPool:
    def __init__(self, running: int, waiting: int) -> None:
        self._running = running
        self._limit = running + waiting
        self._in_flight = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._tokens: set[Cancellation] = set()

    def run(self, pull: Callable[[Cancellation], T], cancel: Cancellation) -> T:
        """``pull(cancel)`` on the pool; its result, or Cancelled as soon as ``cancel`` is set."""
        with self._lock:
            if self._in_flight >= self._limit:
                raise ResourceExhausted(f"{self._in_flight} image pulls in progress, the most crishim runs or "
                                        "queues at once; try again later")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._running, thread_name_prefix="pull")
            self._in_flight += 1
            self._tokens.add(cancel)
            # The RPC's context (its rpc_id in every log line) goes with the pull to the pool's thread.
            future = self._executor.submit(contextvars.copy_context().run, pull, cancel)
        future.add_done_callback(lambda f: self._finished(cancel))
        return _outcome(future, cancel)

    def close(self) -> None:
        """Cancel every pull and wait for the pool's threads to end."""
        with self._lock:
            executor, self._executor = self._executor, None
            for token in self._tokens:
                token.cancel("crishim is stopping")
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _finished(self, cancel: Cancellation) -> None:
        with self._lock:
            self._in_flight -= 1
            self._tokens.discard(cancel)


def _outcome(future: Future[T], cancel: Cancellation) -> T:
    woken = threading.Event()
    future.add_done_callback(lambda f: woken.set())
    cancel.on_cancel(woken.set)
    woken.wait()
    if not future.done():
        future.cancel()  # one still queued never starts; a running one sees the token
        raise Cancelled("the image pull was cancelled by its caller")
    return future.result()
