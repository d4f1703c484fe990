"""Unpacking a pulled image's layers into a snapshotter, as containerd's unpacker does.

Each layer is decompressed while its diff ID is hashed, applied into a fresh
Active snapshot and committed under its chain ID with the previous chain ID as
parent. A layer already present (same chain ID) is skipped; a per-chain lock
makes two concurrent pulls of one image unpack each layer once. A diff ID
mismatch removes the half-made snapshot and fails the pull.
"""

from __future__ import annotations

import errno
import gzip
import io
import secrets
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import structlog
import zstandard

from errdefs import DataLoss, NotFound, PermissionDenied, Unavailable
from snapshotters.apply import apply_tar
from snapshotters.compression import HashingReader, decompressed
from snapshotters.snapshotter import Kind, Snapshotter
from store import mediatypes
from store.cancel import Cancellation
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig
from store.digest import Digest
from store.identity import chain_ids
from store.locks import KeyedLocks
from store.pull import ContentLabels

__all__ = ["EXTRACT_PREFIX", "Unpackable", "Unpacker"]

log = structlog.get_logger(__name__)

LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
LABEL_SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
# containerd's unpacker marks each layer snapshot with its chain ID.
LABEL_SNAPSHOT_CHAIN = "containerd.io/snapshot.ref"
# Active snapshots being unpacked; a crash leaves them behind and start-up removes them.
EXTRACT_PREFIX = "extract-"


class Unpackable(Protocol):
    """An image as unpacking sees it: a pulled one, or one imported from an archive."""

    @property
    def config(self) -> Descriptor: ...
    @property
    def layers(self) -> tuple[Descriptor, ...]: ...
    @property
    def image_config(self) -> ImageConfig: ...


class Unpacker:
    def __init__(self, content: ContentStore, snapshotter: Snapshotter, snapshotter_name: str) -> None:
        self._content = content
        self._sn = snapshotter
        self._name = snapshotter_name
        self._chain_locks = KeyedLocks()

    def unpack(self, image: Unpackable, cancel: Cancellation | None = None) -> ContentLabels:
        """Unpack every layer not unpacked yet; a set ``cancel`` stops it at the next read of a layer."""
        cancel = cancel or Cancellation()
        parent = ""
        labels: ContentLabels = {}
        chains = chain_ids(image.image_config.diff_ids)
        for layer, diff_id, chain_digest in zip(image.layers, image.image_config.diff_ids, chains, strict=True):
            chain = str(chain_digest)
            self._ensure_layer(layer, diff_id, chain, parent, cancel)
            labels[layer.digest] = {LABEL_UNCOMPRESSED: str(diff_id)}
            parent = chain
        labels[image.config.digest] = {LABEL_SNAPSHOT_REF + self._name: parent}
        return labels

    def has_layer(self, chain: Digest) -> bool:
        """Whether a layer is unpacked already, so a pull need not download it (as containerd)."""
        return self._exists(str(chain))

    def remove_leftovers(self) -> None:
        """Drop Active extraction snapshots a crash interrupted."""
        stale: list[str] = []
        self._sn.walk(lambda info: stale.append(info.name)
                      if info.kind == Kind.ACTIVE and info.name.startswith(EXTRACT_PREFIX) else None)
        for key in stale:
            log.info("unpack.leftover_removed", key=key)
            self._sn.remove(key)

    def _ensure_layer(self, layer: Descriptor, diff_id: Digest, chain: str, parent: str,
                      cancel: Cancellation) -> None:
        with self._chain_locks.hold(chain, cancel):
            if self._exists(chain):
                return
            key = f"{EXTRACT_PREFIX}{secrets.token_hex(8)}-{chain}"
            self._sn.prepare(key, parent, labels={LABEL_SNAPSHOT_CHAIN: chain})
            try:
                self._apply(layer, diff_id, key, cancel)
                self._sn.commit(chain, key)
            except BaseException:
                self._sn.remove(key)
                raise
            log.debug("unpack.layer", chain_id=chain, layer=str(layer.digest))

    def _apply(self, layer: Descriptor, diff_id: Digest, key: str, cancel: Cancellation) -> None:
        try:
            self._decompress_and_apply(layer, diff_id, key, cancel)
        except (EOFError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile) as exc:
            raise DataLoss(f"layer {layer.digest}: corrupt {layer.media_type} data: {exc}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Unavailable(f"layer {layer.digest}: no space left to unpack it: {exc.strerror}") from exc
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise PermissionDenied(f"layer {layer.digest}: cannot unpack it: {exc.strerror}: {exc.filename} "
                                       "(unpacking sets owners, device nodes and xattrs: it needs root with "
                                       "CAP_CHOWN, CAP_MKNOD and CAP_SYS_ADMIN)") from exc
            raise

    def _decompress_and_apply(self, layer: Descriptor, diff_id: Digest, key: str, cancel: Cancellation) -> None:
        target, lowers = Path(self._sn.apply_dir(key)), [Path(p) for p in self._sn.lower_dirs(key)]
        compression = mediatypes.layer_compression(layer.media_type) or mediatypes.Compression.NONE
        with self._content.open(layer.digest) as blob:
            reader = HashingReader(decompressed(cast(BinaryIO, _Cancellable(blob, cancel)), compression))
            # Large reads from the decompressor; tarfile itself asks for 10 KiB at a time.
            # A bottom layer has nothing below to hide: deletions are plain, as containerd applies it.
            whiteouts = self._sn.whiteouts if lowers else "delete"
            apply_tar(cast(BinaryIO, io.BufferedReader(reader, 1 << 20)), target, whiteouts, lowers)
            reader.drain()
        if reader.digest != str(diff_id):
            raise DataLoss(f"layer {layer.digest}: uncompressed digest {reader.digest} does not match "
                           f"diff ID {diff_id} in the image config")

    def _exists(self, key: str) -> bool:
        try:
            self._sn.stat(key)
        except NotFound:
            return False
        return True


class _Cancellable(io.RawIOBase):
    """A layer blob whose every read first checks the pull's cancellation token."""

    def __init__(self, blob: BinaryIO, cancel: Cancellation) -> None:
        self._blob = blob
        self._cancel = cancel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._cancel.check()
        data = self._blob.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        self._cancel.check()
        return self._blob.read(size)
