"""Streaming URL tokens: single use, expiring, bounded, unguessable."""

from __future__ import annotations

import pytest

from cri.streaming.session import StreamStatus
from cri.streaming.tokens import TokenCache
from errdefs import ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_request_once() -> None:
    cache: TokenCache[str] = TokenCache(clock=Clock())
    first, second = cache.insert("exec a"), cache.insert("exec b")
    assert first != second and len(first) >= 16
    assert cache.consume(second) == "exec b"
    assert cache.consume(second) is None
    assert cache.consume(first) == "exec a"
    assert cache.consume("made-up") is None


def test_tokens_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(ttl=60, clock=clock)
    token = cache.insert("attach")
    clock.now += 61
    assert cache.consume(token) is None


def test_in_flight_tokens_are_bounded_and_expired_ones_make_room() -> None:
    clock = Clock()
    cache: TokenCache[int] = TokenCache(ttl=60, max_in_flight=3, clock=clock)
    for i in range(3):
        cache.insert(i)
    with pytest.raises(ResourceExhausted):
        cache.insert(4)
    clock.now += 61
    assert cache.consume(cache.insert(5)) == 5


def test_status_json_is_what_client_go_decodes() -> None:
    # client-go's v4 error decoder reads metav1.Status: reason NonZeroExitCode and the code as a cause.
    status = StreamStatus.exit_code(3, ["sh", "-c", "exit 3"])
    assert status.to_json() == (
        b'{"status":"Failure","message":"command terminated with non-zero exit code: error executing command '
        b'[sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",'
        b'"message":"3"}]}}')
    assert StreamStatus.success().to_json() == b'{"status":"Success"}'
    assert StreamStatus.internal("boom").to_json() == (
        b'{"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","code":500}')
