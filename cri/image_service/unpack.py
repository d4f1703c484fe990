"""Unpacking a pulled image's layers into a snapshotter, as containerd's unpacker does.

Each layer is unpacked while it downloads: its compressed stream is
decompressed while its diff ID is hashed and applied into a fresh Active
snapshot, which is committed under its chain ID with the previous chain ID as
parent. With a snapshotter whose Active snapshots can change parent (overlay),
layers unpack side by side, each into its own folder: what a layer takes from
the layers below (the attributes of parent directories it lacks) is filled in
once they are committed, and commits go in chain order, so the result is the
one a layer-by-layer unpack gives. Otherwise each layer waits for the one below.

With a journal, a layer is committed without waiting for the disk: it is
journalled first, and a background sync writes it back (see unpack_journal).

A layer already present (same chain ID) is skipped; a per-chain lock makes two
concurrent pulls of one image unpack each layer once. A diff ID mismatch (or
any failure) removes the half-made snapshot and fails the pull.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import structlog

from cri.image_service.collector import BackgroundCollector
from cri.image_service.inflater import Inflater
from cri.image_service.unpack_journal import JournalEntry, UnpackJournal
from errdefs import Cancelled, DataLoss, FailedPrecondition, NotFound, Unavailable
from snapshotters.apply import ApplyResult, apply_tar, inherit_parent_attributes
from snapshotters.apply_process import apply_in_child
from snapshotters.compression import HashingReader, decompressed
from snapshotters.layer_errors import layer_errors
from snapshotters.snapshotter import LABEL_LAYER_OF, Kind, Snapshotter
from store import mediatypes
from store.cancel import Cancellation
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig
from store.digest import Digest
from store.identity import chain_ids
from store.layer_stream import ContentLabels, LayerStream
from store.locks import KeyedLocks

__all__ = ["EXTRACT_PREFIX", "ImageUnpack", "Unpackable", "Unpacker"]

log = structlog.get_logger(__name__)

LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
LABEL_SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
# Active snapshots being unpacked; a crash leaves them behind and start-up removes them.
EXTRACT_PREFIX = "extract-"
# Layers this large (compressed) are applied in a child process (snapshotters.apply_process), where their
# per-entry work runs beside the rest of the daemon instead of taking turns with it; starting one costs
# about what applying 4 MB of small files does.
CHILD_APPLY_BYTES = 16 << 20
# Below this a layer is inflated on its applier's thread: a thread of its own costs more than it saves.
INFLATER_THREAD_BYTES = 1 << 20
# Reads from the download and the decompressor: large against tarfile's 10 KiB, small times a few layers.
_READ = 256 << 10


class Unpackable(Protocol):
    """An image as unpacking sees it: a pulled one, or one imported from an archive."""

    @property
    def config(self) -> Descriptor: ...
    @property
    def layers(self) -> tuple[Descriptor, ...]: ...
    @property
    def image_config(self) -> ImageConfig: ...


class Unpacker:
    def __init__(self, content: ContentStore, snapshotter: Snapshotter, snapshotter_name: str,
                 journal: UnpackJournal | None = None,
                 on_layer_unpacked: Callable[[float], None] = lambda seconds: None) -> None:
        self._content = content
        self.sn = snapshotter
        self.name = snapshotter_name
        self.chain_locks = KeyedLocks()
        self.journal = journal
        self.on_layer_unpacked = on_layer_unpacked
        self._sync = BackgroundCollector(self.sync, name="sync")
        # Journal entries of pulls still committing layers: a sync must not drop them.
        self._open_entries: set[str] = set()
        self._entries_lock = threading.Lock()

    def close(self) -> None:
        """Stop the background sync, and write back what it had not yet (a clean stop leaves no journal)."""
        self._sync.close()
        self.sync()

    def sync(self) -> None:
        """Write every committed layer back to disk, then drop the journal entries that covered them."""
        if self.journal is None:
            return
        with self._entries_lock:
            names = [name for name in self.journal.names() if name not in self._open_entries]
        if names:
            self.sn.sync()
            self.journal.forget(names)

    def request_sync(self) -> None:
        """A layer was committed without its data synced: the background sync writes it back soon."""
        self._sync.request()

    def open_entry(self, entry: JournalEntry) -> str:
        """Journal a pull's layers before its first commit; the entry stays until ``close_entry`` and a sync."""
        assert self.journal is not None
        with self._entries_lock:
            name = self.journal.record(entry)
            self._open_entries.add(name)
        return name

    def close_entry(self, name: str) -> None:
        """The pull commits no more layers: the next sync that begins covers all it committed."""
        with self._entries_lock:
            self._open_entries.discard(name)
        self.request_sync()

    def recover(self) -> None:
        """After an unclean stop: layers that may have lost files are removed and unpacked again from their blobs."""
        if self.journal is None:
            return
        layers = [entry.upto(i) for entry in self.journal.entries() for i in entry.pending
                  if i < len(entry.layers) and self._exists(entry.chain(i))]
        for layer in sorted(layers, key=lambda e: len(e.layers), reverse=True):
            chain = layer.chain(len(layer.layers) - 1)
            try:
                self.sn.remove(chain)
            except (FailedPrecondition, NotFound) as exc:
                # A container was made on it before the crash (its rootfs depends on this folder), or two
                # entries named it.
                log.warning("unpack.unsynced_layer_kept", chain_id=chain, reason=str(exc))
        for layer in sorted(layers, key=lambda e: len(e.layers)):
            chain = layer.chain(len(layer.layers) - 1)
            try:
                self.unpack(layer)
            except (DataLoss, NotFound, Unavailable) as exc:
                log.error("unpack.unsynced_layer_lost", chain_id=chain, error=str(exc))
            else:
                log.info("unpack.unsynced_layer_redone", chain_id=chain)
        self.sync()

    def start(self, image: Unpackable, cancel: Cancellation) -> ImageUnpack:
        """The unpack of one image, fed layer by layer (a pull's LayerSink)."""
        return ImageUnpack(self, image, cancel)

    def unpack(self, image: Unpackable, cancel: Cancellation | None = None) -> ContentLabels:
        """Unpack every layer not unpacked yet from blobs the content store holds."""
        job = self.start(image, (cancel or Cancellation()).child())
        needed = [i for i in range(len(image.layers)) if job.needs(i)]
        try:
            with ThreadPoolExecutor(max(1, len(needed)), thread_name_prefix="unpack") as pool:
                futures = [pool.submit(self._unpack_stored, job, image.layers[i], i) for i in needed]
        finally:
            job.close()
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            # The layers the first failure stopped fail with Cancelled; the cause is what the caller needs.
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        return job.labels()

    def _unpack_stored(self, job: ImageUnpack, layer: Descriptor, index: int) -> None:
        stream = LayerStream(job.cancel)
        feeder = threading.Thread(target=_feed_stored, args=(self._content, layer, stream), daemon=True)
        feeder.start()
        try:
            job.consume(index, stream)
        finally:
            stream.abandon()
            feeder.join()

    def has_layer(self, chain: Digest) -> bool:
        """Whether a layer is unpacked already, so a pull need not download it (as containerd)."""
        return self._exists(str(chain))

    def remove_leftovers(self) -> None:
        """Drop Active extraction snapshots a crash interrupted."""
        stale: list[str] = []
        self.sn.walk(lambda info: stale.append(info.name)
                      if info.kind == Kind.ACTIVE and info.name.startswith(EXTRACT_PREFIX) else None)
        for key in stale:
            log.info("unpack.leftover_removed", key=key)
            self.sn.remove(key)

    def _exists(self, key: str) -> bool:
        try:
            self.sn.stat(key)
        except NotFound:
            return False
        return True


class ImageUnpack:
    """One image's layers, unpacked as their streams arrive and committed in chain order."""

    def __init__(self, unpacker: Unpacker, image: Unpackable, cancel: Cancellation) -> None:
        self._u = unpacker
        self._image = image
        self.cancel = cancel
        self._chains = [str(c) for c in chain_ids(image.image_config.diff_ids)]
        self._committed = [threading.Event() for _ in image.layers]
        self._needed: list[int] = []
        self._journal_lock = threading.Lock()
        self._journal_entry: str | None = None
        cancel.on_cancel(self._wake_all)

    def _wake_all(self) -> None:
        for event in self._committed:
            event.set()

    def needs(self, index: int) -> bool:
        if self._u.has_layer(Digest.parse(self._chains[index])):
            self._committed[index].set()
            return False
        self._needed.append(index)
        return True

    def close(self) -> None:
        """No more layers come (a pull's LayerSink)."""
        with self._journal_lock:
            name, self._journal_entry = self._journal_entry, None
        if name is not None:
            self._u.close_entry(name)

    def consume(self, index: int, stream: LayerStream) -> None:
        try:
            self._consume(index, stream)
        except BaseException as exc:
            # Whatever stops one layer (a snapshot that cannot be made, a bad layer) stops the image's
            # others, and the layer's download must not wait for a reader that is gone.
            stream.abandon()
            self.cancel.cancel(f"layer {index} of this image failed: {exc}")
            raise

    def _consume(self, index: int, stream: LayerStream) -> None:
        sn = self._u.sn
        chain, parent = self._chains[index], self._chains[index - 1] if index else ""
        side_by_side = sn.can_rebase
        if not side_by_side:
            self._wait_below(index)
        with self._u.chain_locks.hold(chain, self.cancel):
            if self._u.has_layer(Digest.parse(chain)):
                stream.abandon()
                self._committed[index].set()
                return
            key = f"{EXTRACT_PREFIX}{secrets.token_hex(8)}-{chain}"
            sn.prepare(key, "" if side_by_side else parent, labels={LABEL_LAYER_OF: chain})
            try:
                started = time.monotonic()
                result = self._apply(index, key, stream, side_by_side)
                applied = time.monotonic() - started
                self._wait_below(index)
                if side_by_side and parent:
                    sn.rebase(key, parent)
                    if result.implicit_dirs:
                        inherit_parent_attributes(Path(sn.apply_dir(key)), result.implicit_dirs,
                                                  [Path(p) for p in sn.lower_dirs(key)])
                self._commit(chain, key)
            except BaseException:
                sn.remove(key)
                raise
        self._committed[index].set()
        self._u.on_layer_unpacked(applied)
        layer = self._image.layers[index]
        log.info("unpack.layer_committed", layer=index, digest=str(layer.digest), chain_id=chain,
                 size=layer.size, entries=result.entries, unpack_seconds=round(applied, 3))

    def _commit(self, chain: str, key: str) -> None:
        journal = self._u.journal
        if journal is None:
            self._u.sn.commit(chain, key)
            return
        with self._journal_lock:
            if self._journal_entry is None:
                # Once per pull, before its first commit: every layer it may commit.
                image = self._image
                self._journal_entry = self._u.open_entry(JournalEntry.of(
                    image.config, image.layers, image.image_config.diff_ids, tuple(sorted(self._needed))))
        self._u.sn.commit(chain, key, durable=False)

    def labels(self) -> ContentLabels:
        labels: ContentLabels = {layer.digest: {LABEL_UNCOMPRESSED: str(diff_id)} for layer, diff_id
                                 in zip(self._image.layers, self._image.image_config.diff_ids, strict=True)}
        top = self._chains[-1] if self._chains else ""
        labels[self._image.config.digest] = {LABEL_SNAPSHOT_REF + self._u.name: top}
        return labels

    def _wait_below(self, index: int) -> None:
        if index:
            self._committed[index - 1].wait()
        self.cancel.check()

    def _apply(self, index: int, key: str, stream: LayerStream, side_by_side: bool) -> ApplyResult:
        layer = self._image.layers[index]
        with layer_errors(f"{index} ({layer.digest})", layer.media_type):
            return self._decompress_and_apply(index, key, stream, side_by_side)

    def _decompress_and_apply(self, index: int, key: str, stream: LayerStream, side_by_side: bool) -> ApplyResult:
        sn = self._u.sn
        layer, diff_id = self._image.layers[index], self._image.image_config.diff_ids[index]
        target = Path(sn.apply_dir(key))
        lowers = None if side_by_side else [Path(p) for p in sn.lower_dirs(key)]
        compression = mediatypes.layer_compression(layer.media_type) or mediatypes.Compression.NONE
        # A bottom layer has nothing below to hide: deletions are plain, as containerd applies it.
        whiteouts = sn.whiteouts if index else "delete"
        try:
            result, digest = _apply_stream(stream, layer.size, compression, target, whiteouts, lowers, self.cancel,
                                           str(index))
        except BaseException:
            stream.abandon()
            raise
        stream.finish()  # the compressed digest and size are verified before the layer may be committed
        if digest != str(diff_id):
            raise DataLoss(f"layer {index} ({layer.digest}): uncompressed digest {digest} does not match "
                           f"diff ID {diff_id} in the image config")
        return result


def _apply_stream(stream: LayerStream, size: int, compression: str, target: Path, whiteouts: str,
                  lowers: list[Path] | None, cancel: Cancellation, name: str) -> tuple[ApplyResult, str]:
    """Apply the layer ``stream`` carries (compressed, ``size`` bytes) into ``target``; with its diff ID. Where,
    by its size: in a child process, or here with the inflate on a thread of its own, or on this one."""
    if size >= CHILD_APPLY_BYTES:
        return apply_in_child(cast(BinaryIO, io.BufferedReader(stream, _READ)), compression, target, whiteouts,
                              lowers)
    if size >= INFLATER_THREAD_BYTES:
        inflater = Inflater(cast(BinaryIO, stream), compression, cancel, name).start()
        try:
            result = apply_tar(inflater.reader(), target, whiteouts, lowers)
        except BaseException:
            stream.abandon()  # first: the inflater may be waiting for the download
            inflater.stop()
            raise
        return result, inflater.finish()
    reader = HashingReader(decompressed(cast(BinaryIO, io.BufferedReader(stream, _READ)), compression))
    result = apply_tar(cast(BinaryIO, io.BufferedReader(reader, _READ)), target, whiteouts, lowers)
    reader.drain()
    return result, reader.digest


def _feed_stored(content: ContentStore, layer: Descriptor, stream: LayerStream) -> None:
    """Feed a stored blob, checked against its digest as it is read (it may be what a crash left)."""
    hasher = layer.digest.hasher()
    try:
        with content.reader(layer.digest) as blob:
            offset = 0
            while chunk := blob.read(1 << 20):
                hasher.update(chunk)
                stream.feed(offset, chunk)
                offset += len(chunk)
        if hasher.hexdigest() != layer.digest.hex or offset != layer.size:
            raise DataLoss(f"layer {layer.digest}: the stored blob does not match its digest and size")
    except BaseException as exc:
        stream.fail(exc)
        return
    stream.close()
