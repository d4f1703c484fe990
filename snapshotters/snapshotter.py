"""The snapshotter contract, as containerd defines it.

A snapshotter holds filesystem trees in a parent/child chain. Vocabulary:

- ``key`` names an *Active* snapshot (writable) or a *View* (read-only); any string.
- ``name`` names a *Committed* snapshot; only committed snapshots can be parents.

Importing a layer::

    mounts = sn.prepare("extract-<random>", parent=previous_chain_id)
    ... apply the layer's diff into the mounted tree ...
    sn.commit(chain_id, "extract-<random>")

Running a container::

    mounts = sn.prepare(container_id, parent=top_chain_id)
    ... mount them as the container's rootfs; on delete: sn.remove(container_id)

Removing a snapshot that has children fails with FailedPrecondition. Each
snapshotter keeps its own metadata beside its data, so it can be served alone.

A snapshotter may keep containers' writable layers on a filesystem of their own (``writable_root``),
so that kubelet can collect and evict on each disk apart: an Active snapshot prepared without
``LABEL_LAYER_OF`` is a writable layer; one with it is a layer being unpacked, which stays with the
image layers it will join. Committing a writable layer moves it to ``root``.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from errdefs import FailedPrecondition

__all__ = ["LABEL_LAYER_OF", "Info", "Kind", "Mount", "Snapshotter", "Usage"]

# On an Active snapshot: the chain ID it will be committed as (containerd's unpacker sets it too).
LABEL_LAYER_OF = "containerd.io/snapshot.ref"


class Kind(enum.IntEnum):
    # containerd's numbering, so the values cross the gRPC API unchanged.
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    def __str__(self) -> str:
        return self.name.capitalize()


@dataclass(frozen=True, slots=True)
class Info:
    kind: Kind
    name: str
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    size: int = 0
    inodes: int = 0


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    source: str
    options: tuple[str, ...] = ()
    # Where relative paths in ``options`` are resolved (the kernel takes one page of options).
    workdir: str = ""


class Snapshotter(abc.ABC):
    """One storage driver. Every method is safe to call from several threads."""

    @abc.abstractmethod
    def stat(self, key: str) -> Info: ...

    @abc.abstractmethod
    def update(self, info: Info, fieldpaths: Iterable[str] = ()) -> Info:
        """Change labels; ``fieldpaths`` like ``labels.x`` limit which (empty: all labels)."""

    @abc.abstractmethod
    def usage(self, key: str) -> Usage: ...

    @abc.abstractmethod
    def mounts(self, key: str) -> list[Mount]: ...

    @abc.abstractmethod
    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...

    @abc.abstractmethod
    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]: ...

    @abc.abstractmethod
    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None, *, durable: bool = True) -> None:
        """Turn Active ``key`` into Committed ``name``. ``durable``: its data is on disk first; otherwise it
        is committed at once and its data and record reach the disk with the next ``sync`` (the caller keeps
        track of it: a power cut before may lose either)."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Everything committed so far reaches the disk."""

    @abc.abstractmethod
    def remove(self, key: str) -> None: ...

    @abc.abstractmethod
    def walk(self, fn: Callable[[Info], None], filters: Iterable[str] = ()) -> None: ...

    @abc.abstractmethod
    def open(self) -> Self:
        """Make its folders and metadata ready and sweep what a crash left; ``self``, for chaining. The
        constructor does no I/O: nothing else may be called before this."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def root(self) -> str:
        """The folder this snapshotter keeps everything in."""

    @property
    def writable_root(self) -> str:
        """The folder containers' writable layers are kept in: ``root`` unless they have one of their own."""
        return self.root

    def location(self, key: str) -> str:
        """``root`` or ``writable_root``: the one holding the snapshot's files."""
        return self.root

    @abc.abstractmethod
    def apply_dir(self, key: str) -> str:
        """Where a layer's diff is written for an Active snapshot (its upper layer)."""

    @abc.abstractmethod
    def lower_dirs(self, key: str) -> list[str]:
        """The read-only layers under an Active snapshot's ``apply_dir``, nearest first (none if it is a copy)."""

    # Whether an Active snapshot's parent may change before it is committed (``rebase``): its folder does not
    # depend on the layers below, so layers can be unpacked side by side and stacked afterwards.
    can_rebase = False

    def rebase(self, key: str, parent: str) -> None:
        raise FailedPrecondition(f"snapshotter {type(self).__name__} cannot change the parent of {key!r}")

    @property
    @abc.abstractmethod
    def whiteouts(self) -> str:
        """How deletions are applied: ``overlay`` (device 0/0 and opaque xattr) or ``delete``."""
