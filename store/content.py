"""The local content store: read-only blobs named by digest, resumable ingests.

Layout as containerd's ``content/local``::

    <root>/blobs/sha256/<hex>                 committed, mode 0444
    <root>/ingest/<sha256 of ref>/data        bytes received so far
                                 /ref, total, startedat, updatedat

A blob only ever appears by an atomic rename of a fully verified ingest, so a
digest or size mismatch never yields a blob. The store knows nothing of labels,
namespaces or references; those live in the metadata database above it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from errdefs import AlreadyExists, DataLoss, InvalidArgument, NotFound
from store.cancel import Cancellation
from store.digest import Digest
from store.locks import KeyedLocks

__all__ = ["BlobInfo", "ContentStore", "IngestStatus", "Staged", "Writer", "fsync_dir"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IngestStatus:
    ref: str
    offset: int
    total: int
    started_at: datetime
    updated_at: datetime


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._ref_locks = KeyedLocks()

    def open(self) -> ContentStore:
        """Make the store's folders if need be; ``self``, for chaining."""
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)
        return self

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def info(self, digest: Digest) -> BlobInfo:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        return BlobInfo(digest, st.st_size, _time(st.st_ctime), _time(st.st_mtime))

    def exists(self, digest: Digest) -> bool:
        return self.blob_path(digest).exists()

    def reader(self, digest: Digest) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: Digest) -> bytes:
        with self.reader(digest) as f:
            return f.read()

    def delete(self, digest: Digest) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def walk(self) -> Iterator[BlobInfo]:
        for algorithm_dir in (self.root / "blobs").iterdir():
            for path in algorithm_dir.iterdir():
                try:
                    yield self.info(Digest(algorithm_dir.name, path.name))
                except NotFound:
                    continue  # removed while walking

    def usage(self) -> tuple[int, int]:
        """Bytes and inodes the blobs use."""
        total, inodes = 0, 0
        for info in self.walk():
            total += info.size
            inodes += 1
        return total, inodes

    @contextmanager
    def writer(self, ref: str, expected: Digest | None, total: int, *, cancel: Cancellation | None = None,
               wait: bool = True) -> Iterator[Writer]:
        """Open the ingest for ``ref``, resuming what is on disk; one writer per ref at a time.

        A client that does not know the digest (None) or size (0) up front gives them at commit, or not at
        all: the blob is then stored under what was written (sha256).

        A second caller for the same ref waits until the first is done (or ``cancel`` is set), so two
        pulls of one image download each blob once; with ``wait=False`` it is Unavailable at once, as
        containerd answers a client writing to a ref in use.
        """
        if not ref:
            raise InvalidArgument("ingest ref must not be empty")
        with self._ref_locks.hold(ref, cancel, wait):
            writer = Writer(self, self._ingest_dir(ref), ref, expected, total)
            try:
                yield writer
            finally:
                writer.close()

    def stage(self, ref: str, reader: BinaryIO, size: int) -> Staged:
        """Take ``size`` bytes whose digest is learnt only while reading them (a member of an archive).

        They wait in ``ref``'s ingest, which must be new; nothing is a blob until ``Staged.commit``, so a
        caller can first hold the blob (a lease) and a collection running meanwhile never sees it unheld.
        """
        path = self._ingest_dir(ref)
        try:
            path.mkdir()
        except FileExistsError:
            raise AlreadyExists(f"ingest {ref!r}: in use") from None
        (path / "ref").write_text(ref)
        (path / "startedat").write_text(_now_text())
        (path / "total").write_text(str(size))
        staged = Staged(self, path, size)
        try:
            staged.fill(reader)
        except BaseException:
            staged.discard()
            raise
        return staged

    def ingests(self) -> list[IngestStatus]:
        statuses = []
        for path in (self.root / "ingest").iterdir():
            status = _read_status(path)
            if status is not None:
                statuses.append(status)
        return statuses

    def ingest_status(self, ref: str) -> IngestStatus:
        status = _read_status(self._ingest_dir(ref))
        if status is None:
            raise NotFound(f"ingest {ref!r}: not found")
        return status

    def abort(self, ref: str) -> None:
        path = self._ingest_dir(ref)
        if not path.exists():
            raise NotFound(f"ingest {ref!r}: not found")
        with self._ref_locks.hold(ref):
            shutil.rmtree(path, ignore_errors=True)

    def _ingest_dir(self, ref: str) -> Path:
        return self.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


class Writer:
    """Appends to an ingest while hashing; ``commit`` verifies and publishes the blob."""

    def __init__(self, store: ContentStore, path: Path, ref: str, expected: Digest | None, total: int) -> None:
        self._store = store
        self._path = path
        self.expected = expected
        self.total = total  # 0: not known yet
        self._algorithm = expected.algorithm if expected else "sha256"
        self._hash = hashlib.new(self._algorithm)
        path.mkdir(exist_ok=True)
        _write_once(path / "ref", ref)
        _write_once(path / "startedat", _now_text())
        (path / "total").write_text(str(total))
        self._file = (path / "data").open("a+b")
        self.offset = self._rehash()
        self._tee: Callable[[int, bytes], None] | None = None

    def _rehash(self) -> int:
        """Hash what an earlier, interrupted download left, so it can resume."""
        self._file.seek(0)
        offset = 0
        while chunk := self._file.read(_CHUNK):
            if self.total and offset + len(chunk) > self.total:
                self.truncate()
                return 0
            self._hash.update(chunk)
            offset += len(chunk)
        return offset

    def tee(self, sink: Callable[[int, bytes], None]) -> None:
        """Pass the blob's bytes to ``sink(offset, data)`` too: what an earlier download left, then every write."""
        self._file.flush()
        position = 0
        while position < self.offset and (chunk := os.pread(self._file.fileno(), _CHUNK, position)):
            sink(position, chunk)
            position += len(chunk)
        self._tee = sink

    def write(self, data: bytes) -> None:
        if self.total and self.offset + len(data) > self.total:
            raise DataLoss(f"content {self.expected or self._path.name}: more than the expected {self.total} bytes")
        self._file.write(data)
        self._hash.update(data)
        if self._tee is not None:
            self._tee(self.offset, data)
        self.offset += len(data)

    def digest(self) -> Digest:
        """The digest of the bytes written so far."""
        return Digest(self._algorithm, self._hash.hexdigest())

    def truncate(self) -> None:
        """Start over, e.g. when a server ignores a Range request."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.new(self._algorithm)
        self.offset = 0

    def commit(self, expected: Digest | None = None, total: int = 0) -> Digest:
        """Verify against the digest and size given here or when opened (those known) and publish the blob
        under its digest."""
        self._file.flush()
        (self._path / "updatedat").write_text(_now_text())
        actual = self.digest()
        expected = expected or self.expected or actual
        total = total or self.total or self.offset
        if self.offset != total or actual != expected:
            self.discard()
            raise DataLoss(f"content {expected}: got {self.offset} bytes with digest {actual}, "
                           f"expected {total} bytes")
        target = self._store.blob_path(expected)
        if target.exists():
            # Verified bytes of a blob already stored: the stored file stays as it is, as containerd's does.
            self.discard()
            return expected
        os.fsync(self._file.fileno())
        self._file.close()
        data = self._path / "data"
        data.chmod(0o444)
        os.rename(data, target)
        fsync_dir(target.parent)
        shutil.rmtree(self._path, ignore_errors=True)
        return expected

    def discard(self) -> None:
        self._file.close()
        shutil.rmtree(self._path, ignore_errors=True)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            (self._path / "updatedat").write_text(_now_text())
            self._file.close()


class Staged:
    """An ingest with its bytes all there and its digest known, not yet a blob."""

    def __init__(self, store: ContentStore, path: Path, size: int) -> None:
        self._store = store
        self._path = path
        self.size = size
        self.digest = Digest("sha256", "")

    def fill(self, reader: BinaryIO) -> None:
        hasher = hashlib.sha256()
        received = 0
        with (self._path / "data").open("xb") as out:
            while received < self.size and (chunk := reader.read(min(_CHUNK, self.size - received))):
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
            os.fsync(out.fileno())
        if received != self.size:
            raise DataLoss(f"ingest {self._path.name}: ended after {received} of {self.size} bytes")
        self.digest = Digest("sha256", hasher.hexdigest())

    def commit(self) -> None:
        """Publish the blob; one already there with this digest is kept."""
        target = self._store.blob_path(self.digest)
        if not target.exists():
            data = self._path / "data"
            data.chmod(0o444)
            os.rename(data, target)
            fsync_dir(target.parent)
        shutil.rmtree(self._path, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self._path, ignore_errors=True)


def _read_status(path: Path) -> IngestStatus | None:
    try:
        data = (path / "data").stat()
        return IngestStatus(
            ref=(path / "ref").read_text(),
            offset=data.st_size,
            total=int((path / "total").read_text() or 0),
            started_at=datetime.fromisoformat((path / "startedat").read_text()),
            updated_at=_time(data.st_mtime),
        )
    except (FileNotFoundError, ValueError):
        return None


def _write_once(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text(text)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _now_text() -> str:
    return datetime.now(UTC).isoformat()
