"""containerd's filter syntax, as far as snapshots and content use it.

``kind==committed``, ``name~=^sha256:``, ``parent==x``, ``labels."containerd.io/gc.root"``
(present), ``labels.a!=b``. Selectors joined by ``,`` must all hold; a list of
filters matches when any of them does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from errdefs import InvalidArgument

__all__ = ["Selector", "matches", "matches_fields", "parse"]

_SELECTOR_RE = re.compile(
    r'^\s*(?P<field>[A-Za-z_][\w]*(?:\.(?:"(?:[^"\\]|\\.)*"|[\w./-]+))*)\s*'
    r'(?:(?P<op>==|!=|~=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,]*?))?\s*$'
)


@dataclass(frozen=True, slots=True)
class Selector:
    path: tuple[str, ...]
    op: str  # "" means: the field is present
    value: str

    def holds(self, fields: Mapping[str, Any]) -> bool:
        found = _lookup(fields, self.path)
        if self.op == "":
            return found is not None
        if found is None:
            return self.op == "!="
        if self.op == "==":
            return str(found) == self.value
        if self.op == "!=":
            return str(found) != self.value
        return re.search(self.value, str(found)) is not None


def parse(text: str) -> list[Selector]:
    selectors = []
    for part in _split(text):
        match = _SELECTOR_RE.match(part)
        if not match:
            raise InvalidArgument(f"invalid filter {text!r}")
        value = match.group("value") or ""
        if value.startswith('"'):
            value = value[1:-1]
        op = match.group("op") or ""
        if op == "~=":
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidArgument(f"invalid filter {text!r}: {exc}") from exc
        selectors.append(Selector(_path(match.group("field")), op, value))
    return selectors


def matches_fields(fields: Mapping[str, Any], filters: list[str]) -> bool:
    if not filters:
        return True
    return any(all(s.holds(fields) for s in parse(f)) for f in filters)


def matches(info: Any, filters: list[str]) -> bool:
    """Whether a snapshot ``Info`` passes any of ``filters``."""
    fields = {"kind": str(info.kind).lower(), "name": info.name, "parent": info.parent, "labels": info.labels}
    return matches_fields(fields, filters)


def _split(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _path(field: str) -> tuple[str, ...]:
    return tuple(m.group(1) if m.group(1) is not None else m.group(2)
                 for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^."]+)', field))


def _lookup(fields: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = fields
    for name in path:
        if not isinstance(current, Mapping) or name not in current:
            return None
        current = current[name]
    return current
