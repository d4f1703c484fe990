"""The database both the metadata store and the snapshotters use: reads beside writes, queries that cannot write."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlitedb import Database

SCHEMA = ["CREATE TABLE items (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"]


class Refused(Exception):
    pass


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "state" / "meta.db", SCHEMA, synchronous="NORMAL", errors=Refused)
    database.open()
    with database.write() as conn:
        conn.execute("INSERT INTO items VALUES ('a', 1)")
    yield database
    database.close()


def _value(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM items WHERE name='a'").fetchone()[0])


def test_the_constructor_touches_no_file(tmp_path: Path) -> None:
    Database(tmp_path / "state" / "meta.db", SCHEMA, synchronous="NORMAL", errors=Refused)
    assert not (tmp_path / "state").exists()


def test_a_read_is_not_held_up_by_a_write_in_progress_and_sees_the_last_commit(db: Database) -> None:
    writing, read_done = threading.Event(), threading.Event()
    seen: list[int] = []

    def reader() -> None:
        writing.wait(5)
        with db.read() as conn:
            seen.append(_value(conn))
        read_done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    with db.write() as conn:
        conn.execute("UPDATE items SET value=2 WHERE name='a'")
        writing.set()
        assert read_done.wait(5), "the read waited for the write to finish"
    thread.join()
    assert seen == [1]
    with db.read() as conn:
        assert _value(conn) == 2


def test_a_query_cannot_write(db: Database) -> None:
    with pytest.raises(Refused), db.read() as conn:
        conn.execute("UPDATE items SET value=3 WHERE name='a'")
    with db.read() as conn:
        assert _value(conn) == 1


def test_a_read_inside_a_write_sees_its_changes(db: Database) -> None:
    with db.write() as conn:
        conn.execute("UPDATE items SET value=4 WHERE name='a'")
        with db.read() as inner:
            assert _value(inner) == 4


def test_a_failed_write_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute("UPDATE items SET value=5 WHERE name='a'")
        raise RuntimeError("stop")
    with db.read() as conn:
        assert _value(conn) == 1


def test_migrations_run_once_each(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    first = Database(path, SCHEMA, synchronous="NORMAL", errors=Refused)
    first.open()
    first.close()
    again = Database(path, [*SCHEMA, "ALTER TABLE items ADD COLUMN note TEXT"], synchronous="NORMAL",
                     errors=Refused)
    again.open()
    assert again.schema_version == 2
    again.close()
