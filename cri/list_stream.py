"""The CRI's list streaming calls (StreamPodSandboxes, StreamContainers, StreamImages and the stats and metrics
streams): the items of the matching List call, sent in chunks instead of one message.

A listing is a generator shared by both calls, so both answer the same filters with the same items. The
stream builds the items one by one as it sends them: a client that goes away stops the building too (the
stats cost a cgroup and a network namespace read per item), and the call ends CANCELLED. Each item is in
exactly one chunk; a chunk holds at least one item and stays within ``CHUNK_BYTES`` unless one item alone
is larger; no items, no chunk (the stream just ends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from errdefs import Cancelled

__all__ = ["CHUNK_BYTES", "chunks", "stream_listing"]

# gRPC's default limit on a received message, so that any client, not only kubelet (16 MiB), reads a chunk.
CHUNK_BYTES = 4 * 1024 * 1024


class _Sized(Protocol):
    def ByteSize(self) -> int: ...


Item = TypeVar("Item", bound=_Sized)
Response = TypeVar("Response")


def stream_listing(items: Iterable[Item], context: Any,
                   respond: Callable[[list[Item]], Response]) -> Iterator[Response]:
    """``respond(chunk)`` for each chunk of ``items``, built while the client of ``context`` is still there."""
    for chunk in chunks(_while_connected(items, context)):
        yield respond(chunk)


def chunks(items: Iterable[Item], limit: int = CHUNK_BYTES) -> Iterator[list[Item]]:
    """``items`` in order, cut into lists that each serialize, as the one repeated field (number 1) of a
    Stream response, to at most ``limit`` bytes; an item larger than that goes alone."""
    chunk: list[Item] = []
    size = 0
    for item in items:
        item_size = _field_size(item.ByteSize())
        if chunk and size + item_size > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk


def _field_size(size: int) -> int:
    # An item in its chunk: the field's one-byte tag, the varint of its length, then its bytes.
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def _while_connected(items: Iterable[Item], context: Any) -> Iterator[Item]:
    iterator = iter(items)
    while True:
        if not context.is_active():
            raise Cancelled("the client went away before the listing was sent")
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item
