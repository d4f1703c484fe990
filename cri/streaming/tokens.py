"""Single-use tokens for streaming URLs: each names the one Exec, Attach or PortForward request it was made
for, and expires unused after a minute (as kubelet's streaming request cache)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from errdefs import ResourceExhausted

__all__ = ["TOKEN_TTL_SECONDS", "TokenCache"]

TOKEN_TTL_SECONDS = 60.0
MAX_IN_FLIGHT = 1000

_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[_R]):
    request: _R
    expires: float


class TokenCache(Generic[_R]):
    def __init__(self, ttl: float = TOKEN_TTL_SECONDS, max_in_flight: int = MAX_IN_FLIGHT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_in_flight
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[_R]] = OrderedDict()
        self._lock = threading.Lock()

    def insert(self, request: _R) -> str:
        with self._lock:
            self._expire()
            if len(self._entries) >= self._max:
                raise ResourceExhausted("maximum number of in-flight streaming requests exceeded")
            token = secrets.token_urlsafe(12)
            while token in self._entries:
                token = secrets.token_urlsafe(12)
            self._entries[token] = _Entry(request, self._clock() + self._ttl)
            return token

    def consume(self, token: str) -> _R | None:
        """The request the token was made for, once; None for an unknown, used or expired token."""
        with self._lock:
            entry = self._entries.pop(token, None)
        if entry is None or self._clock() > entry.expires:
            return None
        return entry.request

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            token, entry = next(iter(self._entries.items()))
            if entry.expires >= now:
                return
            del self._entries[token]
