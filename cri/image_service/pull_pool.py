"""Pulls run on their own bounded pool, so no number of slow or hung pulls can take the RPC threads.

At most ``running`` pulls download and unpack at once; up to ``waiting`` more queue for a turn. A pull
beyond both is refused at once with ResourceExhausted (kubelet retries it with back-off), so the RPC
pool always has threads left for Version, List and Status. The RPC's thread only waits: when the caller
cancels or its deadline passes, the pull's token is set, the RPC answers CANCELLED at once, and the pull
stops at its next chunk on its own thread (a queued one never starts).

Identical pulls (same ``key``: reference and credentials) asked for while one is in flight join it instead of
starting another: 20 pods asking for one image at once make one resolve, one download per layer, one unpack,
and all get its outcome. The shared pull is cancelled only when every caller has given up. A caller that joins
still holds an RPC thread while it waits, so it counts towards the limit like one that starts a pull.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from errdefs import Cancelled, ResourceExhausted
from store.cancel import Cancellation

__all__ = ["PullPool"]

T = TypeVar("T")


@dataclass
class _Flight:
    future: Future[Any]
    token: Cancellation
    callers: int = 0


class PullPool:
    def __init__(self, running: int, waiting: int) -> None:
        self._running = running
        self._limit = running + waiting
        self._callers = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._tokens: set[Cancellation] = set()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, pull: Callable[[Cancellation], T], cancel: Cancellation, key: Hashable | None = None) -> T:
        """``pull(token)`` on the pool, or the identical one in flight; its result, or Cancelled once ``cancel``
        is set."""
        with self._lock:
            if self._callers >= self._limit:
                raise ResourceExhausted(f"{self._callers} image pulls in progress, the most crishim runs or "
                                        "queues at once; try again later")
            flight = self._flights.get(key) if key is not None else None
            if flight is None:
                flight = self._start(pull)
                if key is not None:
                    self._flights[key] = flight
                    flight.future.add_done_callback(lambda f: self._forget(key, flight))
            flight.callers += 1
            self._callers += 1
        try:
            result: T = _outcome(flight.future, cancel)
            return result
        finally:
            self._leave(flight)

    def close(self) -> None:
        """Cancel every pull and wait for the pool's threads to end."""
        with self._lock:
            executor, self._executor = self._executor, None
            for token in self._tokens:
                token.cancel("crishim is stopping")
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _start(self, pull: Callable[[Cancellation], T]) -> _Flight:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._running, thread_name_prefix="pull")
        token = Cancellation()
        self._tokens.add(token)
        # The RPC's context (its rpc_id in every log line) goes with the pull to the pool's thread.
        future = self._executor.submit(contextvars.copy_context().run, pull, token)
        future.add_done_callback(lambda f: self._finished(token))
        return _Flight(future, token)

    def _leave(self, flight: _Flight) -> None:
        with self._lock:
            flight.callers -= 1
            self._callers -= 1
            abandoned = flight.callers == 0 and not flight.future.done()
            if abandoned:
                # No later caller may join a pull about to be cancelled.
                self._flights = {k: f for k, f in self._flights.items() if f is not flight}
        if abandoned:
            flight.future.cancel()  # one still queued never starts; a running one sees the token
            flight.token.cancel("the image pull was cancelled by every caller waiting for it")

    def _forget(self, key: Hashable, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _finished(self, token: Cancellation) -> None:
        with self._lock:
            self._tokens.discard(token)


def _outcome(future: Future[T], cancel: Cancellation) -> T:
    woken = threading.Event()
    future.add_done_callback(lambda f: woken.set())
    cancel.on_cancel(woken.set)
    woken.wait()
    if not future.done():
        raise Cancelled("the image pull was cancelled by its caller")
    return future.result()
