"""The one state machine: moves only from allowed states, never writes a removed object, reports real moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.lifecycle import IllegalTransition, container_lifecycle
from runtime.records import KIND_CONTAINER, ContainerRecord, ContainerState
from store.metadata import MetadataDB

NS = "k8s.io"


def _record(db: MetadataDB, container_id: str) -> ContainerRecord:
    record = ContainerRecord(id=container_id, name=f"name-{container_id}", sandbox_id="pod", config_b64="",
                             created_at=1, image_ref="i", image_id="sha256:x", image_repo_digest="",
                             snapshot_key=container_id, snapshotter="overlayfs", log_path="", bundle="/b")
    with db.transaction() as tx:
        tx.put_object(NS, KIND_CONTAINER, record.id, record.name, record.to_doc())
    return record


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetadataDB]:
    opened = MetadataDB(tmp_path / "meta.db").open()
    yield opened
    opened.close()


def test_moves_from_allowed_states_once_and_reports_only_real_moves(db: MetadataDB) -> None:
    moves: list[tuple[str, str]] = []
    lifecycle = container_lifecycle(db, NS, lambda old, new: moves.append((old.state, new.state)))
    _record(db, "a")
    C = ContainerState
    assert lifecycle.transition("a", {C.CREATED}, C.CREATED, pid=42) is not None  # fields only: no move
    started = lifecycle.transition("a", {C.CREATED}, C.RUNNING, started_at=5)
    assert started is not None and (started.pid, started.started_at) == (42, 5)
    exited = lifecycle.transition("a", {C.CREATED, C.RUNNING}, C.EXITED, exit_code=3)
    assert exited is not None and exited.exit_code == 3
    # A late start or a second exit notification changes nothing.
    assert lifecycle.transition("a", {C.CREATED}, C.RUNNING) is None
    assert lifecycle.transition("a", {C.CREATED, C.RUNNING}, C.EXITED, exit_code=9) is None
    with db.transaction() as tx:
        assert tx.get_object(NS, KIND_CONTAINER, "a")["exit_code"] == 3
    assert moves == [(C.CREATED, C.RUNNING), (C.RUNNING, C.EXITED)]


def test_a_removed_object_is_never_written_again(db: MetadataDB) -> None:
    lifecycle = container_lifecycle(db, NS, lambda old, new: None)
    _record(db, "gone")
    with db.transaction() as tx:
        tx.delete_object(NS, KIND_CONTAINER, "gone")
    assert lifecycle.transition("gone", {ContainerState.CREATED}, ContainerState.RUNNING) is None
    with db.transaction() as tx:
        assert tx.list_objects(NS, KIND_CONTAINER) == []


def test_a_move_the_table_forbids_is_a_bug_not_a_write(db: MetadataDB) -> None:
    lifecycle = container_lifecycle(db, NS, lambda old, new: None)
    _record(db, "a")
    with pytest.raises(IllegalTransition):
        lifecycle.transition("a", {ContainerState.EXITED}, ContainerState.RUNNING)
