"""The CRI messages of listings, each built once per version of its record.

kubelet lists every pod and container each second (its pod lifecycle relist). A message is kept while its
record stays the same object (the record parsed from an unchanged document is handed out again,
``runtime.parsed``) and what else it is built from (its key: a container's image names) stays equal; a node of
a thousand containers spent most of a listing building messages that had not changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["MessageMemo"]


class _Record(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Record)
K = TypeVar("K", bound=Hashable)
M = TypeVar("M")


class MessageMemo(Generic[R, K, M]):
    """The message of each record, as last built by ``make(record, key)``. Messages handed out are shared:
    callers copy them into their answers (as a repeated field does) and never change them."""

    def __init__(self, make: Callable[[R, K], M]) -> None:
        self._make = make
        self._built: dict[str, tuple[R, K, M]] = {}

    def build(self, records: Iterable[R], key: Callable[[R], K], *, whole: bool = True) -> list[M]:
        """The messages of ``records``, in their order; ``whole``: they are every record, and the messages of
        the others are dropped."""
        known = self._built
        kept = {} if whole else known
        messages = []
        for record in records:
            wanted = key(record)
            entry = known.get(record.id)
            if entry is None or entry[0] is not record or entry[1] != wanted:
                entry = (record, wanted, self._make(record, wanted))
            kept[record.id] = entry
            messages.append(entry[2])
        if whole:
            self._built = kept  # one assignment: a listing running beside this one keeps what it started with
        return messages
