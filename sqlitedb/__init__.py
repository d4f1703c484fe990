"""One SQLite database file, shared by the metadata store and each snapshotter.

WAL mode: writes run in IMMEDIATE transactions on one connection, serialised by a lock in the process;
reads run in deferred transactions on connections of their own (``query_only``), each seeing the database
as the last commit left it, so a long write never holds up a Stat, a List or a Mounts, and a query cannot
write. A read inside a write on the same thread uses the writer's connection and sees its changes.

The constructor does no I/O; ``open`` creates the file and migrates the schema, one ``PRAGMA user_version``
step per migration.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database"]


class Database:
    def __init__(self, path: Path, migrations: Sequence[str], *, synchronous: str,
                 errors: Callable[[sqlite3.Error], Exception], foreign_keys: bool = False) -> None:
        self.path = path
        self._migrations = migrations
        self._synchronous = synchronous
        self._foreign_keys = foreign_keys
        self._errors = errors
        self._lock = threading.RLock()
        self._writer: sqlite3.Connection | None = None
        self._writing_thread: int | None = None
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._translated():
            conn = self._connect()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(self._migrations[version:], start=version + 1):
                conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
        self._writer = conn

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    @property
    def schema_version(self) -> int:
        with self.read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic unit of reads and writes; rolled back if the block raises.

        Not ``durable``: the commit does not wait for the disk. It is still atomic, and it reaches the disk
        with the next durable commit (which syncs the whole write-ahead log) or a sync of the filesystem;
        a power cut before then loses it, never half of it.
        """
        with self._lock, self._translated():
            conn = self._writer_connection()
            relaxed = not durable and self._synchronous != "NORMAL"
            if relaxed:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            self._writing_thread = threading.get_ident()
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._writing_thread = None
                if relaxed:
                    conn.execute(f"PRAGMA synchronous={self._synchronous}")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent view of the last commit; nothing in it can write."""
        writer = self._writer_connection()
        if self._writing_thread == threading.get_ident():
            yield writer
            return
        conn = self._reader()
        try:
            with self._translated():
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
        finally:
            self._readers.put(conn)

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            raise self._errors(sqlite3.ProgrammingError(f"{self.path} is not open"))
        return self._writer

    def _reader(self) -> sqlite3.Connection:
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        with self._translated():
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
        with self._readers_lock:
            self._all_readers.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self._foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._errors(exc) from exc
