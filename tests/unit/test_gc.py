import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from store.content import ContentStore
from store.descriptor import Descriptor
from store.digest import Digest, sha256_of
from store.gc import collect
from store.metadata import ImageRecord, Lease, MetadataDB

NS = "k8s.io"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MetadataDB, ContentStore]]:
    db = MetadataDB(tmp_path / "meta.db").open()
    yield db, ContentStore(tmp_path / "content").open()
    db.close()


def blob(db: MetadataDB, content: ContentStore, data: bytes, labels: dict[str, str] | None = None) -> Digest:
    digest = sha256_of(data)
    with content.writer(str(digest), digest, len(data)) as w:
        w.write(data)
        w.commit()
    with db.transaction() as tx:
        tx.put_content(NS, digest, len(data), labels or {})
    return digest


def image(db: MetadataDB, content: ContentStore, name: str, layers: list[bytes]) -> tuple[Digest, list[Digest]]:
    layer_digests = [blob(db, content, data) for data in layers]
    labels = {f"containerd.io/gc.ref.content.l.{i}": str(d) for i, d in enumerate(layer_digests)}
    labels["containerd.io/gc.ref.snapshot.overlayfs"] = f"chain-{name}"
    manifest = blob(db, content, name.encode(), labels)
    with db.transaction() as tx:
        tx.put_image(NS, ImageRecord(name, Descriptor(MANIFEST, manifest, len(name))))
    return manifest, layer_digests


def test_removing_an_image_frees_only_what_nothing_else_uses(stores: tuple[MetadataDB, ContentStore]) -> None:
    db, content = stores
    m1, (shared, only1) = image(db, content, "one", [b"shared", b"only-one"])
    m2, _ = image(db, content, "two", [b"shared", b"only-two"])
    assert collect(db, content).removed_blobs == []
    with db.transaction() as tx:
        tx.delete_image(NS, "one")
    result = collect(db, content)
    assert set(result.removed_blobs) == {m1, only1}
    assert content.exists(shared) and content.exists(m2)
    assert {r.digest for r in db.list_content(NS)} == {m2, shared, sha256_of(b"only-two")}
    assert result.live_snapshots["overlayfs"] == {"chain-two"}


def test_leased_and_rooted_content_survives(stores: tuple[MetadataDB, ContentStore]) -> None:
    db, content = stores
    leased = sha256_of(b"leased")
    with content.writer("x", leased, 6) as w:
        w.write(b"leased")
        w.commit()
    rooted = blob(db, content, b"rooted", {"containerd.io/gc.root": "yes"})
    orphan = blob(db, content, b"orphan")
    with db.transaction() as tx:
        tx.create_lease(NS, Lease("pull"))
        tx.add_lease_resource(NS, "pull", "content", str(leased))
    assert collect(db, content).removed_blobs == [orphan]
    assert content.exists(leased) and content.exists(rooted)
    with db.transaction() as tx:
        tx.delete_lease(NS, "pull")
    assert collect(db, content).removed_blobs == [leased]


def test_blob_recorded_in_another_namespace_stays(stores: tuple[MetadataDB, ContentStore]) -> None:
    db, content = stores
    digest = blob(db, content, b"both")
    with db.transaction() as tx:
        tx.put_content("default", digest, 4, {"containerd.io/gc.root": "x"})
    assert collect(db, content).removed_blobs == []
    assert content.exists(digest)
    assert db.list_content(NS) == []


def test_expired_leases_stop_protecting(stores: tuple[MetadataDB, ContentStore]) -> None:
    db, content = stores
    digest = sha256_of(b"from a pull that died")
    with content.writer("x", digest, 21) as w:
        w.write(b"from a pull that died")
        w.commit()
    with db.transaction() as tx:
        tx.create_lease(NS, Lease("dead", {"containerd.io/gc.expire": "2000-01-01T00:00:00+00:00"}))
        tx.add_lease_resource(NS, "dead", "content", str(digest))
        tx.create_lease(NS, Lease("live", {"containerd.io/gc.expire": "2999-01-01T00:00:00+00:00"}))
    assert collect(db, content).removed_blobs == [digest]
    with db.transaction() as tx:
        assert [lease.id for lease in tx.list_leases(NS)] == ["live"]


def test_abandoned_ingests_are_dropped(stores: tuple[MetadataDB, ContentStore]) -> None:
    db, content = stores
    digest = sha256_of(b"never finished")
    for ref in ("old", "fresh"):
        with content.writer(ref, digest, 14) as w:
            w.write(b"never")
    data = next(p for p in (content.root / "ingest").iterdir() if (p / "ref").read_text() == "old") / "data"
    os.utime(data, (0, 0))
    collect(db, content)
    assert [s.ref for s in content.ingests()] == ["fresh"]


_KILLED_IN_GC = """
import os, signal, sys
from pathlib import Path
from store.content import ContentStore
from store.gc import collect
from store.metadata import MetadataDB

def unlink_then_die(self, digest):
    self.blob_path(digest).unlink()
    os.kill(os.getpid(), signal.SIGKILL)

ContentStore.delete = unlink_then_die
root = Path(sys.argv[1])
collect(MetadataDB(root / "meta.db").open(), ContentStore(root / "content").open())
"""


def test_kill_9_after_the_first_blob_unlink_leaves_no_record_without_its_file(tmp_path: Path) -> None:
    db, content = MetadataDB(tmp_path / "meta.db").open(), ContentStore(tmp_path / "content").open()
    image(db, content, "one", [b"only-one-a", b"only-one-b"])
    image(db, content, "two", [b"only-two"])
    with db.transaction() as tx:
        tx.delete_image(NS, "one")
    db.close()
    child = subprocess.run([sys.executable, "-c", _KILLED_IN_GC, str(tmp_path)],
                           cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with closing(MetadataDB(tmp_path / "meta.db").open()) as db:
        missing = [r.digest for r in db.list_content(NS) if not content.exists(r.digest)]
        assert missing == [], "content records whose blob is gone"
        collect(db, content)  # the next collection finishes the job
        assert {r.digest for r in db.list_content(NS)} == {d.digest for d in content.walk()}
        assert len(db.list_content(NS)) == 2
