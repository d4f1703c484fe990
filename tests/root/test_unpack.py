"""Unpacking layers from the content store into snapshots keyed by chain ID."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from cri.image_service import unpack
from cri.image_service.unpack import Unpacker
from cri.image_service.unpack_journal import JournalEntry, UnpackJournal
from errdefs import Cancelled, DataLoss, InvalidArgument
from snapshotters import Kind, NativeSnapshotter, OverlaySnapshotter, Snapshotter
from snapshotters.gc import prune
from store.cancel import Cancellation
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig
from store.digest import Digest, sha256_of
from store.layer_stream import LayerStream
from store.pull import PulledImage
from store.reference import Reference
from tests.support.tools import require_root

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.docker.image.rootfs.diff.tar"


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root("unpacking layers")


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(raw: bytes, media_type: str) -> bytes:
    if media_type == GZIP:
        return gzip.compress(raw)
    if media_type == ZSTD:
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def store_blob(content: ContentStore, data: bytes) -> Digest:
    digest = sha256_of(data)
    with content.writer(str(digest), digest, len(data)) as w:
        w.write(data)
        w.commit()
    return digest


def make_image(content: ContentStore, layers: list[tuple[str, dict[str, bytes]]],
               diff_ids: list[Digest] | None = None) -> PulledImage:
    descs, diffs = [], []
    for media_type, files in layers:
        raw = layer_tar(files)
        blob = compress(raw, media_type)
        descs.append(Descriptor(media_type, store_blob(content, blob), len(blob)))
        diffs.append(sha256_of(raw))
    diffs = diff_ids or diffs
    config_doc = {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers",
                                                                      "diff_ids": [str(d) for d in diffs]}}
    config_bytes = json.dumps(config_doc).encode()
    config = Descriptor("application/vnd.oci.image.config.v1+json", store_blob(content, config_bytes),
                        len(config_bytes))
    manifest = Descriptor("application/vnd.oci.image.manifest.v1+json", sha256_of(b"m"), 1)
    return PulledImage(Reference.parse("example.com/app:v1"), manifest, manifest, config, tuple(descs),
                       ImageConfig.parse(config_bytes))


def chain(parent: str, diff: Digest) -> str:
    return "sha256:" + hashlib.sha256(f"{parent} {diff}".encode()).hexdigest()


@pytest.fixture(params=["inflated inline", "inflated on a thread", "in a child"])
def apply_where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every layer applied the one way, whatever its size: in the daemon, inflated on the applier's thread
    or on one of its own, or in a child process."""
    child, thread = {"inflated inline": (1 << 60, 1 << 60), "inflated on a thread": (1 << 60, 0),
                     "in a child": (0, 0)}[request.param]
    monkeypatch.setattr(unpack, "CHILD_APPLY_BYTES", child)
    monkeypatch.setattr(unpack, "INFLATER_THREAD_BYTES", thread)
    return str(request.param)


@pytest.fixture(params=["overlayfs", "native"])
def setup(request: pytest.FixtureRequest, tmp_path: Path,
          apply_where: str) -> Iterator[tuple[ContentStore, Snapshotter, Unpacker]]:
    driver = OverlaySnapshotter if request.param == "overlayfs" else NativeSnapshotter
    content, sn = ContentStore(tmp_path / "content").open(), driver(tmp_path / request.param).open()
    yield content, sn, Unpacker(content, sn, request.param)
    sn.close()


Overlay = tuple[ContentStore, OverlaySnapshotter]


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Overlay]:
    sn = OverlaySnapshotter(tmp_path / "overlayfs").open()
    yield ContentStore(tmp_path / "content").open(), sn
    sn.close()


def keys(sn: Snapshotter) -> dict[str, tuple[str, Kind]]:
    found: dict[str, tuple[str, Kind]] = {}
    sn.walk(lambda info: found.__setitem__(info.name, (info.parent, info.kind)))
    return found


def test_layers_become_a_chain_of_committed_snapshots(setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    image = make_image(content, [(GZIP, {"a": b"1"}), (ZSTD, {"b": b"2"}), (PLAIN, {"c": b"3"})])
    d0, d1, d2 = image.image_config.diff_ids
    c1 = chain(str(d0), d1)
    c2 = chain(c1, d2)
    labels = unpacker.unpack(image)
    assert keys(sn) == {str(d0): ("", Kind.COMMITTED), c1: (str(d0), Kind.COMMITTED), c2: (c1, Kind.COMMITTED)}
    name = "overlayfs" if isinstance(sn, OverlaySnapshotter) else "native"
    assert labels[image.config.digest] == {f"containerd.io/gc.ref.snapshot.{name}": c2}
    assert [labels[layer.digest] for layer in image.layers] == [
        {"containerd.io/uncompressed": str(d)} for d in (d0, d1, d2)]


def test_present_layers_are_skipped_and_concurrent_unpacks_share(
        setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    image = make_image(content, [(GZIP, {"a": b"1"}), (GZIP, {"b": b"2"})])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            unpacker.unpack(image)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(keys(sn)) == 2


def test_diff_id_mismatch_fails_and_leaves_no_snapshot(setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    image = make_image(content, [(GZIP, {"a": b"1"})], diff_ids=[sha256_of(b"something else")])
    with pytest.raises(DataLoss, match="diff ID"):
        unpacker.unpack(image)
    assert keys(sn) == {}


def test_leftover_extractions_are_removed(setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    _, sn, unpacker = setup
    sn.prepare("extract-dead-sha256:x")
    sn.prepare("container-keeps")
    unpacker.remove_leftovers()
    assert set(keys(sn)) == {"container-keeps"}


def test_prune_keeps_live_chains_and_active_snapshots(setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    kept = make_image(content, [(GZIP, {"shared": b"s"}), (GZIP, {"one": b"1"})])
    dropped = make_image(content, [(GZIP, {"shared": b"s"}), (GZIP, {"two": b"2"})])
    top_kept = unpacker.unpack(kept)[kept.config.digest]
    unpacker.unpack(dropped)
    live = set(top_kept.values())
    sn.prepare("container", next(iter(live)))
    removed = prune(sn, live)
    assert len(removed) == 1
    assert set(keys(sn)) == {str(kept.image_config.diff_ids[0]), *live, "container"}


def test_a_directory_a_layer_lacks_takes_the_attributes_of_the_layer_below(
        setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    lower = _tar([_entry("d", tarfile.DIRTYPE, 0o710, uid=1000), _entry("d/x", tarfile.REGTYPE, 0o644)])
    upper = _tar([_entry("d/e/f", tarfile.REGTYPE, 0o600)])
    image = make_image_from_tars(content, [lower, upper])
    top = unpacker.unpack(image)[image.config.digest][f"containerd.io/gc.ref.snapshot.{_name(sn)}"]
    folder = _own_folder(sn, top)
    st_d, st_e = (folder / "d").stat(), (folder / "d" / "e").stat()
    assert (oct(st_d.st_mode & 0o7777), st_d.st_uid) == (oct(0o710), 1000)
    assert (oct(st_e.st_mode & 0o7777), st_e.st_uid) == (oct(0o755), 0)


def _name(sn: Snapshotter) -> str:
    return "overlayfs" if isinstance(sn, OverlaySnapshotter) else "native"


def _own_folder(sn: Snapshotter, committed: str) -> Path:
    """The folder holding what the committed layer itself wrote (for native, its full copy)."""
    mount = sn.prepare("probe", committed)[0]
    if mount.type == "bind":
        return Path(mount.source)
    sn.remove("probe")
    lowers = next(o for o in mount.options if o.startswith("lowerdir="))
    return Path(lowers.removeprefix("lowerdir=").split(":")[0])


def _entry(name: str, kind: bytes, mode: int, uid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, uid, uid
    return info


def _tar(entries: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for info in entries:
            archive.addfile(info, io.BytesIO(b"") if info.isreg() else None)
    return buf.getvalue()


def make_image_from_tars(content: ContentStore, tars: list[bytes], blobs: list[bytes] | None = None) -> PulledImage:
    """An image of ``tars``, stored as ``blobs`` (by default, each tar gzip-compressed)."""
    descs = []
    for blob in blobs if blobs is not None else [gzip.compress(raw) for raw in tars]:
        descs.append(Descriptor(GZIP, store_blob(content, blob), len(blob)))
    config_doc = {"os": "linux", "architecture": "amd64",
                  "rootfs": {"type": "layers", "diff_ids": [str(sha256_of(raw)) for raw in tars]}}
    config_bytes = json.dumps(config_doc).encode()
    config = Descriptor("application/vnd.oci.image.config.v1+json", store_blob(content, config_bytes),
                        len(config_bytes))
    manifest = Descriptor("application/vnd.oci.image.manifest.v1+json", sha256_of(b"m"), 1)
    return PulledImage(Reference.parse("example.com/app:v1"), manifest, manifest, config, tuple(descs),
                       ImageConfig.parse(config_bytes))


def test_a_clean_stop_leaves_no_journal_and_a_crash_redoes_exactly_the_journalled_layers(overlay: Overlay,
                                                                                         tmp_path: Path) -> None:
    content, sn = overlay
    journal = UnpackJournal(tmp_path / "journal")
    image = make_image(content, [(GZIP, {"a": b"bottom"}), (GZIP, {"b": b"top"})])
    first = Unpacker(content, sn, "overlayfs", journal)
    top = first.unpack(image)[image.config.digest]["containerd.io/gc.ref.snapshot.overlayfs"]
    first.close()
    assert journal.names() == []
    bottom_folder, top_folder = _own_folder(sn, str(image.image_config.diff_ids[0])), _own_folder(sn, top)
    # As after a power cut before the writeback: the top layer's record survived, one of its files did not.
    journal.record(JournalEntry.of(image.config, image.layers, image.image_config.diff_ids, pending=(1,)))
    (top_folder / "b").write_bytes(b"")
    (bottom_folder / "a").write_bytes(b"changed")  # not journalled, so not touched
    restarted = Unpacker(content, sn, "overlayfs", journal)
    restarted.recover()
    restarted.close()
    assert set(keys(sn)) == {str(image.image_config.diff_ids[0]), top}
    assert (_own_folder(sn, top) / "b").read_bytes() == b"top"
    assert (bottom_folder / "a").read_bytes() == b"changed"
    assert journal.names() == []


class _CountingJournal(UnpackJournal):
    """A real journal that also keeps what it was asked to record."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.recorded: list[JournalEntry] = []

    def record(self, entry: JournalEntry) -> str:
        self.recorded.append(entry)
        return super().record(entry)


def test_a_pull_journals_its_layers_once_before_its_first_commit(overlay: Overlay, tmp_path: Path) -> None:
    content, sn = overlay
    journal = _CountingJournal(tmp_path / "journal")
    unpacker = Unpacker(content, sn, "overlayfs", journal)
    first = make_image(content, [(GZIP, {"a": b"1"})])
    unpacker.unpack(first)
    image = make_image(content, [(GZIP, {"a": b"1"}), (GZIP, {"b": b"2"}), (GZIP, {"c": b"3"})])
    unpacker.unpack(image)
    unpacker.close()
    # The second image's bottom layer was there already: only the two above it were to be committed.
    assert [entry.pending for entry in journal.recorded] == [(0,), (1, 2)]
    assert journal.names() == []


def test_a_sync_keeps_the_entry_of_a_pull_still_committing(overlay: Overlay, tmp_path: Path) -> None:
    content, sn = overlay
    journal = UnpackJournal(tmp_path / "journal")
    unpacker = Unpacker(content, sn, "overlayfs", journal)
    image = make_image(content, [(GZIP, {"a": b"1"})])
    name = unpacker.open_entry(JournalEntry.of(image.config, image.layers, image.image_config.diff_ids, (0,)))
    unpacker.sync()
    assert journal.names() == [name]
    unpacker.close_entry(name)
    unpacker.sync()
    assert journal.names() == []
    unpacker.close()


def test_a_crash_redoes_every_layer_of_a_pull_not_synced(overlay: Overlay, tmp_path: Path) -> None:
    content, sn = overlay
    journal = UnpackJournal(tmp_path / "journal")
    image = make_image(content, [(GZIP, {"a": b"bottom"}), (GZIP, {"b": b"top"})])
    first = Unpacker(content, sn, "overlayfs", journal)
    top = first.unpack(image)[image.config.digest]["containerd.io/gc.ref.snapshot.overlayfs"]
    first.close()
    bottom = str(image.image_config.diff_ids[0])
    journal.record(JournalEntry.of(image.config, image.layers, image.image_config.diff_ids, pending=(0, 1)))
    (_own_folder(sn, bottom) / "a").write_bytes(b"")
    (_own_folder(sn, top) / "b").unlink()
    restarted = Unpacker(content, sn, "overlayfs", journal)
    restarted.recover()
    restarted.close()
    assert set(keys(sn)) == {bottom, top}
    assert (_own_folder(sn, bottom) / "a").read_bytes() == b"bottom"
    assert (_own_folder(sn, top) / "b").read_bytes() == b"top"
    assert journal.names() == []


def _inflaters() -> list[str]:
    """The inflate threads and the child appliers this process still has."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat_file.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and b"snapshotters.apply_process" in cmdline:
            children.append(stat_file.parent.name)
    return [t.name for t in threading.enumerate() if t.name.startswith("inflate-")] + children


def test_a_layer_the_applier_refuses_stops_its_inflater(setup: tuple[ContentStore, Snapshotter, Unpacker]) -> None:
    content, sn, unpacker = setup
    hostile = tarfile.TarInfo("../escape")
    hostile.size = 0
    # Many megabytes after the refused entry, so the inflater is still at work when the applier stops.
    raw = _tar([hostile]) + os.urandom(24 << 20)
    image = make_image_from_tars(content, [raw], [gzip.compress(raw, compresslevel=1)])
    with pytest.raises(InvalidArgument, match="escapes"):
        unpacker.unpack(image)
    assert _inflaters() == []
    assert keys(sn) == {}


def test_corrupt_compressed_data_is_data_loss_and_leaves_nothing(
    setup: tuple[ContentStore, Snapshotter, Unpacker],
) -> None:
    content, sn, unpacker = setup
    raw = layer_tar({"a": os.urandom(1 << 20)})
    blob = bytearray(gzip.compress(raw))
    blob[len(blob) // 2] ^= 0xFF
    image = make_image_from_tars(content, [raw], [bytes(blob)])
    with pytest.raises(DataLoss):
        unpacker.unpack(image)
    assert _inflaters() == []
    assert keys(sn) == {}


def test_a_cancelled_unpack_stops_its_child_and_leaves_nothing(
    setup: tuple[ContentStore, Snapshotter, Unpacker], apply_where: str,
) -> None:
    content, sn, unpacker = setup
    image = make_image(content, [(GZIP, {f"f{i}": os.urandom(1 << 20) for i in range(24)})])
    blob = content.read(image.layers[0].digest)
    cancel = Cancellation()
    job = unpacker.start(image, cancel)
    assert job.needs(0)
    stream = LayerStream(cancel)
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            job.consume(0, stream)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    worker = threading.Thread(target=consume)
    worker.start()
    stream.feed(0, blob[: len(blob) // 2])  # half the download, and no more for now
    deadline = time.monotonic() + 10

    def started() -> bool:
        if apply_where == "inflated inline":
            return any(kind == Kind.ACTIVE for _, kind in keys(sn).values())
        return bool(_inflaters())

    while not started() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started(), "the layer's unpack never started"
    cancel.cancel("the client went away")
    worker.join(10)
    job.close()
    assert not worker.is_alive()
    assert [type(e) for e in errors] == [Cancelled]
    assert _inflaters() == []
    assert keys(sn) == {}
