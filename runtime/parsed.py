"""Records parsed from their stored JSON once: while an object's document is unchanged, the record parsed
from it before is handed out again (records are frozen, so sharing one is safe).

A node of a thousand containers answers kubelet's ListContainers every second; parsing a thousand documents
into records each time cost more than the rest of the call. Only the documents of the latest listing are
kept, so a removed or changed object's old record goes with the next listing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ParsedRecords"]

_R = TypeVar("_R")


class ParsedRecords(Generic[_R]):
    def __init__(self, parse: Callable[[dict[str, Any]], _R]) -> None:
        self._parse = parse
        self._by_text: dict[str, _R] = {}

    def all(self, texts: list[str]) -> list[_R]:
        """The records of ``texts`` (a whole listing), in order."""
        known = self._by_text
        fresh: dict[str, _R] = {}
        records = []
        for text in texts:
            record = known.get(text)
            if record is None:
                record = self._parse(json.loads(text))
            fresh[text] = record
            records.append(record)
        # One assignment: a listing running beside this one keeps the dictionary it started with.
        self._by_text = fresh
        return records
