"""Platform specifiers and the matcher that picks a manifest from an index.

Like containerd's ``platforms.Default()``: the host's OS and architecture,
normalised (``x86_64`` → ``amd64``, ``aarch64`` → ``arm64``), with arm variants
ranked so the best the host can run comes first.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from errdefs import InvalidArgument

__all__ = ["Platform", "default_platform", "ranked"]

_T = TypeVar("_T")

_ARCH_ALIASES = {
    "x86_64": "amd64", "x86-64": "amd64", "i386": "386", "i686": "386",
    "aarch64": "arm64", "armhf": "arm", "armel": "arm",
}
_ARM_VARIANT_ALIASES = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}
# What each arm variant can also run, best first.
_ARM_COMPATIBLE = {"v8": ["v8", "v7", "v6", "v5"], "v7": ["v7", "v6", "v5"], "v6": ["v6", "v5"], "v5": ["v5"]}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: want os/arch[/variant]")
        return cls(parts[0].lower(), parts[1], parts[2] if len(parts) == 3 else "").normalized()

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Platform:
        return cls(str(spec.get("os", "")).lower(), str(spec.get("architecture", "")),
                   str(spec.get("variant", ""))).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant
        if arch == "arm64" and variant in ("v8", "8"):
            variant = ""
        elif arch == "arm":
            variant = _ARM_VARIANT_ALIASES.get(variant, variant)
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os, arch, variant)

    def rank(self, candidate: Platform) -> int | None:
        """How well ``candidate`` suits this host (0 best), or None if it can't run here."""
        if candidate.os != self.os:
            return None
        if candidate.architecture == self.architecture:
            if self.architecture != "arm":
                return 0 if candidate.variant in ("", self.variant) else None
            compatible = _ARM_COMPATIBLE.get(self.variant, [self.variant])
            return compatible.index(candidate.variant) if candidate.variant in compatible else None
        if self.architecture == "arm64" and candidate.architecture == "arm":
            compatible = _ARM_COMPATIBLE["v8"]
            return 10 + compatible.index(candidate.variant) if candidate.variant in compatible else None
        return None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def default_platform() -> Platform:
    return Platform("linux", _platform.machine()).normalized()


def ranked(host: Platform, items: Iterable[_T], platform_of: Callable[[_T], Platform | None]) -> list[_T]:
    """The items this host can run, best first; one naming no platform matches (as in containerd), and
    equally good ones keep their order."""
    scored = []
    for position, item in enumerate(items):
        platform = platform_of(item)
        rank = 0 if platform is None else host.rank(platform)
        if rank is not None:
            scored.append((rank, position, item))
    return [item for _, _, item in sorted(scored, key=lambda entry: entry[:2])]
