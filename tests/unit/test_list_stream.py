"""How a listing is cut into the chunks of a Stream call, and when the stream stops building it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cri.api.runtime.v1 import api_pb2
from cri.list_stream import CHUNK_BYTES, chunks, stream_listing
from errdefs import Cancelled


def _container(index: int, annotation_bytes: int = 0) -> api_pb2.Container:
    return api_pb2.Container(id=f"c{index:04d}", annotations={"blob": "x" * annotation_bytes})


def test_each_chunk_serializes_within_the_limit_and_keeps_every_item_once_in_order() -> None:
    items = [_container(i, annotation_bytes=(i * 7919) % 3000) for i in range(200)]
    limit = 20_000
    cut = list(chunks(items, limit))
    assert len(cut) > 1
    assert [c.id for chunk in cut for c in chunk] == [c.id for c in items]
    for chunk in cut:
        size = api_pb2.StreamContainersResponse(containers=chunk).ByteSize()
        assert size <= limit
    # Cut no earlier than needed: each chunk but the last had no room for the next item.
    for chunk, following in zip(cut, cut[1:], strict=False):
        grown = api_pb2.StreamContainersResponse(containers=[*chunk, following[0]]).ByteSize()
        assert grown > limit


def test_an_item_larger_than_the_limit_goes_alone() -> None:
    small, big = _container(0, 10), _container(1, 5000)
    assert [[c.id for c in chunk] for chunk in chunks([small, big, small], 1000)] == [["c0000"], ["c0001"],
                                                                                      ["c0000"]]


def test_no_items_no_chunk() -> None:
    assert list(chunks([], CHUNK_BYTES)) == []


class _Context:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


def test_a_client_gone_stops_the_building_before_the_next_item() -> None:
    context = _Context()
    built: list[int] = []

    def listing() -> Iterator[api_pb2.Container]:
        for i in range(10):
            built.append(i)
            if i == 2:
                context.active = False
            yield _container(i)

    responses = stream_listing(listing(), context, lambda chunk: api_pb2.StreamContainersResponse(containers=chunk))
    with pytest.raises(Cancelled):
        next(responses)
    assert built == [0, 1, 2]
