import hashlib
import stat
import threading
import time
from pathlib import Path

import pytest

from errdefs import DataLoss, NotFound
from store.content import ContentStore
from store.digest import Digest, sha256_of

DATA = b"hello content store\n" * 1000


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content").open()


def write(store: ContentStore, data: bytes, digest: Digest | None = None, size: int | None = None) -> None:
    digest = digest or sha256_of(data)
    with store.writer(f"layer-{digest}", digest, len(data) if size is None else size) as w:
        w.write(data)
        w.commit()


def test_commit_publishes_a_read_only_blob(store: ContentStore) -> None:
    write(store, DATA)
    digest = sha256_of(DATA)
    path = store.blob_path(digest)
    assert path == store.root / "blobs" / "sha256" / digest.hex
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.info(digest).size == len(DATA)
    assert [i.digest for i in store.walk()] == [digest]
    assert store.ingests() == []


def test_digest_mismatch_yields_no_blob(store: ContentStore) -> None:
    wrong = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(DataLoss, match="expected"):
        write(store, DATA, digest=wrong)
    assert not store.exists(wrong)
    assert list(store.walk()) == []
    assert store.ingests() == []


def test_size_mismatch_yields_no_blob(store: ContentStore) -> None:
    with pytest.raises(DataLoss):
        write(store, DATA, size=len(DATA) + 1)
    with pytest.raises(DataLoss, match="more than"):
        write(store, DATA, size=len(DATA) - 1)
    assert list(store.walk()) == []


def test_interrupted_ingest_resumes_where_it_stopped(store: ContentStore) -> None:
    digest, half = sha256_of(DATA), len(DATA) // 2
    ref = f"layer-{digest}"
    with store.writer(ref, digest, len(DATA)) as w:
        w.write(DATA[:half])  # then the process "dies": no commit
    status = store.ingest_status(ref)
    assert (status.ref, status.offset, status.total) == (ref, half, len(DATA))
    with store.writer(ref, digest, len(DATA)) as w:
        assert w.offset == half
        w.write(DATA[half:])
        w.commit()
    assert store.read(digest) == DATA


def test_ingest_longer_than_expected_starts_over(store: ContentStore) -> None:
    digest = sha256_of(DATA)
    ref = f"layer-{digest}"
    with store.writer(ref, digest, len(DATA) + 10) as w:
        w.write(DATA + b"x" * 10)
    with store.writer(ref, digest, len(DATA)) as w:
        assert w.offset == 0


def test_abort_removes_the_ingest(store: ContentStore) -> None:
    digest = sha256_of(DATA)
    with store.writer("r", digest, len(DATA)) as w:
        w.write(DATA[:10])
    store.abort("r")
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort("r")


def test_one_writer_per_ref(store: ContentStore) -> None:
    digest = sha256_of(DATA)
    order: list[str] = []

    def second() -> None:
        with store.writer("same", digest, len(DATA)) as w:
            order.append(f"second saw offset {w.offset}")

    with store.writer("same", digest, len(DATA)) as w:
        w.write(DATA[:100])
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.1)
        order.append("first done")
    thread.join()
    assert order == ["first done", "second saw offset 100"]


def test_missing_blob_is_not_found(store: ContentStore) -> None:
    digest = sha256_of(b"nothing")
    with pytest.raises(NotFound):
        store.info(digest)
    with pytest.raises(NotFound):
        store.read(digest)
    with pytest.raises(NotFound):
        store.delete(digest)
