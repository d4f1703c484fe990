"""The background collector: requests coalesce, a failing collection does not end the thread, close joins."""

from __future__ import annotations

import threading

from cri.image_service.collector import BackgroundCollector


def test_a_failed_collection_is_retried_on_the_next_request_and_close_joins() -> None:
    runs: list[int] = []
    done = threading.Semaphore(0)

    def collect() -> None:
        runs.append(len(runs))
        done.release()
        if len(runs) == 1:
            raise RuntimeError("first collection fails")

    collector = BackgroundCollector(collect)
    collector.request()
    assert done.acquire(timeout=10)
    collector.request()
    assert done.acquire(timeout=10)
    collector.close()
    assert runs == [0, 1]
    assert not [t for t in threading.enumerate() if t.name == "gc"]
    collector.request()  # after close: ignored, starts nothing
    assert not [t for t in threading.enumerate() if t.name == "gc"]
