"""The one place a pod's or a container's state changes.

``transition(id, allowed_from, to, **fields)`` reads the record, checks that its state is one of
``allowed_from`` and that the move is in the table below, and writes the new state with ``fields`` — all
in one SQLite write transaction, so two callers can never both act on the same old state (a stop that read
READY cannot write NOTREADY over a pod a remove deleted meanwhile, a start cannot write RUNNING over the
EXITED an exit notification wrote). It answers None, writing nothing, when the object is gone or in
another state; a removed object is never written again. The ``on_moved`` hook (events) runs only when the
state actually changed, after the commit.

Who moves what: CreateContainer inserts CREATED; StartContainer moves CREATED → RUNNING; only exit
notifications (runtime.exits, or a stop that waited for the exit) move anything to EXITED; a conmon that died
without an exit file makes UNKNOWN. RunPodSandbox inserts NOTREADY and moves it to READY once set up;
StopPodSandbox and recovery move READY → NOTREADY. Queries never write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

from errdefs import NotFound
from runtime.records import KIND_CONTAINER, KIND_SANDBOX, ContainerRecord, ContainerState, SandboxRecord, SandboxState
from store.metadata import MetadataDB

__all__ = ["CONTAINER_MOVES", "SANDBOX_MOVES", "IllegalTransition", "Lifecycle", "container_lifecycle",
           "sandbox_lifecycle"]

_C, _S = ContainerState, SandboxState
# Each state and the states it may move to. A transition to the same state updates fields only.
CONTAINER_MOVES: Mapping[str, frozenset[str]] = {
    _C.CREATED: frozenset({_C.CREATED, _C.RUNNING, _C.EXITED, _C.UNKNOWN}),
    _C.RUNNING: frozenset({_C.RUNNING, _C.EXITED, _C.UNKNOWN}),
    _C.UNKNOWN: frozenset({_C.UNKNOWN, _C.EXITED}),
    _C.EXITED: frozenset({_C.EXITED}),
}
SANDBOX_MOVES: Mapping[str, frozenset[str]] = {
    _S.NOTREADY: frozenset({_S.NOTREADY, _S.READY}),
    _S.READY: frozenset({_S.READY, _S.NOTREADY}),
}


class IllegalTransition(AssertionError):
    """A caller asked for a move the table forbids: a bug in crishim, never the client's fault."""


class _Record(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    def to_doc(self) -> dict[str, Any]: ...
    def replace(self, **changes: Any) -> Self: ...


R = TypeVar("R", bound=_Record)


class Lifecycle(Generic[R]):
    def __init__(self, db: MetadataDB, namespace: str, kind: str, from_doc: Callable[[dict[str, Any]], R],
                 moves: Mapping[str, frozenset[str]], on_moved: Callable[[R, R], None] = lambda old, new: None,
                 ) -> None:
        self._db = db
        self._namespace = namespace
        self._kind = kind
        self._from_doc = from_doc
        self._moves = moves
        self._on_moved = on_moved

    def transition(self, obj_id: str, allowed_from: Collection[str], to: str, **fields: Any) -> R | None:
        """Move ``obj_id`` to ``to`` (setting ``fields``) if it exists and is in one of ``allowed_from``."""
        for state in allowed_from:
            if to not in self._moves[state]:
                raise IllegalTransition(f"{self._kind} {state} → {to} is not a transition")
        with self._db.transaction() as tx:
            try:
                current = self._from_doc(tx.get_object(self._namespace, self._kind, obj_id))
            except NotFound:
                return None
            if current.state not in allowed_from:
                return None
            updated = current.replace(**fields, state=to)
            tx.update_object(self._namespace, self._kind, obj_id, updated.to_doc())
        if updated.state != current.state:
            self._on_moved(current, updated)
        return updated


    def update(self, obj_id: str, **fields: Any) -> R | None:
        """Set fields other than the state on an object that still exists; None (nothing written) if it is gone."""
        if "state" in fields:
            raise IllegalTransition("the state changes only through transition()")
        with self._db.transaction() as tx:
            try:
                current = self._from_doc(tx.get_object(self._namespace, self._kind, obj_id))
            except NotFound:
                return None
            updated = current.replace(**fields)
            tx.update_object(self._namespace, self._kind, obj_id, updated.to_doc())
        return updated


def container_lifecycle(db: MetadataDB, namespace: str,
                        on_moved: Callable[[ContainerRecord, ContainerRecord], None]) -> Lifecycle[ContainerRecord]:
    return Lifecycle(db, namespace, KIND_CONTAINER, ContainerRecord.from_doc, CONTAINER_MOVES, on_moved)


def sandbox_lifecycle(db: MetadataDB, namespace: str,
                      on_moved: Callable[[SandboxRecord, SandboxRecord], None] = lambda old, new: None,
                      ) -> Lifecycle[SandboxRecord]:
    return Lifecycle(db, namespace, KIND_SANDBOX, SandboxRecord.from_doc, SANDBOX_MOVES, on_moved)
