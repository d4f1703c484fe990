"""Pulling an image into the content store, labelled the way containerd labels it.

The reference is resolved to an index or manifest; for an index the manifest
for this platform is chosen; then its config is fetched, and the layers not
unpacked yet are downloaded side by side, each fed to the unpacker while it
downloads (nothing is read back from disk). Blobs fetched so far are held by a
lease so a collection running meanwhile keeps them. Content records, their
labels and whatever the caller records (the image names) land in one
transaction at the end, so a failed pull leaves no image behind.

When one layer fails, the pull's other layers stop at their next chunk. A
layer whose bytes are wrong (digest, size, diff ID, a malformed tar) also has
the pull's ingests removed, as a retry must not resume them; after a
cancellation or a lost connection they stay, so a retry resumes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from errdefs import Cancelled, DataLoss, InvalidArgument, NotFound
from store import mediatypes
from store.cancel import Cancellation
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig, Index, Manifest
from store.gc import LABEL_EXPIRE, LEASE_CONTENT
from store.layer_stream import ContentLabels, LayerSink, LayerStream
from store.metadata import Lease, MetadataDB, Tx
from store.platforms import Platform, ranked
from store.reference import Reference
from store.remote import Credentials, HostsConfig, RegistryClient

__all__ = ["ContentLabels", "LayerSink", "LayerStream", "PulledImage", "Puller", "distribution_source_label"]

log = structlog.get_logger(__name__)

LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
_LEASE_TTL = timedelta(hours=24)
_MAX_INDEX_DEPTH = 4
# containerd's limits for documents it reads whole.
_MAX_MANIFEST = 4 << 20
_MAX_CONFIG = 32 << 20


@dataclass(frozen=True, slots=True)
class PulledImage:
    reference: Reference
    target: Descriptor
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    image_config: ImageConfig


@dataclass(frozen=True, slots=True)
class _Fetched:
    desc: Descriptor
    labels: dict[str, str]


class Puller:
    def __init__(self, content: ContentStore, db: MetadataDB, hosts: HostsConfig, *, platform: Platform,
                 max_concurrent_downloads: int = 3, progress_timeout: float | None = 300.0,
                 on_bytes: Callable[[str, int], None] | None = None,
                 on_layer_fetched: Callable[[float], None] = lambda seconds: None) -> None:
        """``on_bytes(registry host, count)`` sees every byte fetched; ``on_layer_fetched(seconds)`` each
        layer's download time."""
        self._content = content
        self._db = db
        self._hosts = hosts
        self._platform = platform
        self._max_downloads = max(1, max_concurrent_downloads)
        self._progress_timeout = progress_timeout
        self._on_bytes = on_bytes
        self._on_layer_fetched = on_layer_fetched

    def pull(self, namespace: str, ref: Reference, credentials: Credentials | None,
             unpack: Callable[[PulledImage, Cancellation], LayerSink],
             record: Callable[[Tx, PulledImage], None] = lambda tx, image: None,
             cancel: Cancellation | None = None) -> PulledImage:
        """Fetch ``ref``, unpacking its layers as they download, and commit its content.

        ``unpack(image, cancel)`` gives the sink the layers are fed to; its
        labels go on the image's blobs. ``record`` runs inside the final
        transaction. Once ``cancel`` is set the pull stops at its next chunk and
        fails with Cancelled; its lease goes, its partial downloads stay in ingest/.
        """
        cancel = (cancel or Cancellation()).child()
        lease = self._create_lease(namespace)
        try:
            with self._client(ref, credentials, cancel) as client:
                image, fetched, extra = _Pull(self, client, namespace, lease.id, ref, unpack, cancel).run()
            cancel.check()
            with self._db.transaction() as tx:
                for item in fetched:
                    labels = {**_with_source(tx, namespace, item, ref), **extra.get(item.desc.digest, {})}
                    tx.put_content(namespace, item.desc.digest, item.desc.size, labels)
                record(tx, image)
                tx.delete_lease(namespace, lease.id)
        except BaseException:
            with self._db.transaction() as tx:
                tx.delete_lease(namespace, lease.id)
            raise
        return image

    def _client(self, ref: Reference, credentials: Credentials | None, cancel: Cancellation) -> RegistryClient:
        return RegistryClient(ref.domain, ref.path, self._hosts.hosts_for(ref.domain), credentials,
                              progress_timeout=self._progress_timeout, on_bytes=self._on_bytes, cancel=cancel)

    def _create_lease(self, namespace: str) -> Lease:
        expire = (datetime.now(UTC) + _LEASE_TTL).isoformat()
        with self._db.transaction() as tx:
            return tx.create_lease(namespace, Lease(f"pull-{uuid.uuid4().hex}", {LABEL_EXPIRE: expire}))


class _Pull:
    """The state of one pull: which blobs it has fetched and how they are labelled."""

    def __init__(self, puller: Puller, client: RegistryClient, namespace: str, lease_id: str,
                 ref: Reference, unpack: Callable[[PulledImage, Cancellation], LayerSink],
                 cancel: Cancellation) -> None:
        self._unpack = unpack
        self._cancel = cancel
        self._p = puller
        self._client = client
        self._namespace = namespace
        self._lease_id = lease_id
        self._ref = ref

    def run(self) -> tuple[PulledImage, list[_Fetched], ContentLabels]:
        target = self._client.resolve(self._ref.object)
        if self._ref.digest and target.digest != self._ref.digest:
            raise InvalidArgument(f"{self._ref}: registry resolved it to {target.digest}")
        fetched: list[_Fetched] = []
        manifest_desc = self._select_manifest(target, fetched)
        manifest = Manifest.parse(manifest_desc.media_type, self._fetch_bytes(manifest_desc))
        fetched.append(_Fetched(manifest_desc, _manifest_labels(manifest)))
        config = ImageConfig.parse(self._fetch_bytes(manifest.config))
        fetched.append(_Fetched(manifest.config, {}))
        self._check(target, manifest, config)
        image = PulledImage(self._ref, target, manifest_desc, manifest.config, manifest.layers, config)
        sink = self._unpack(image, self._cancel)
        # Like containerd, a layer whose snapshot exists already is not downloaded again.
        missing = [i for i in range(len(manifest.layers)) if sink.needs(i)]
        try:
            self._fetch_layers(manifest.layers, missing, sink)
        except (DataLoss, InvalidArgument):
            self._drop_ingests([manifest.layers[i] for i in missing])
            raise
        finally:
            sink.close()
        fetched += [_Fetched(manifest.layers[i], {}) for i in missing]
        return image, fetched, sink.labels()

    def _select_manifest(self, desc: Descriptor, fetched: list[_Fetched]) -> Descriptor:
        for _ in range(_MAX_INDEX_DEPTH):
            if desc.media_type in mediatypes.MANIFEST_TYPES:
                return desc
            if desc.media_type not in mediatypes.INDEX_TYPES:
                raise InvalidArgument(f"{self._ref}: unsupported media type {desc.media_type!r}")
            index = Index.parse(desc.media_type, self._fetch_bytes(desc))
            fetched.append(_Fetched(desc, _index_labels(index)))
            desc = self._best_match(index)
        raise InvalidArgument(f"{self._ref}: image indexes nested deeper than {_MAX_INDEX_DEPTH}")

    def _best_match(self, index: Index) -> Descriptor:
        matches = ranked(self._p._platform, index.manifests, lambda desc: desc.platform)
        if not matches:
            raise NotFound(f"{self._ref}: no match for platform {self._p._platform} in manifest list")
        return matches[0]

    def _check(self, target: Descriptor, manifest: Manifest, config: ImageConfig) -> None:
        if target.media_type in mediatypes.MANIFEST_TYPES and self._p._platform.rank(config.platform) is None:
            raise NotFound(f"{self._ref}: no match for platform {self._p._platform} in manifest "
                           f"(image is {config.platform})")
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"{self._ref}: config lists {len(config.diff_ids)} diff IDs for "
                                  f"{len(manifest.layers)} layers")

    def _fetch_bytes(self, desc: Descriptor) -> bytes:
        """A document read into memory (index, manifest, config), so its size is bounded first."""
        limit = _MAX_CONFIG if desc.media_type in mediatypes.CONFIG_TYPES else _MAX_MANIFEST
        if desc.size > limit:
            raise InvalidArgument(f"{self._ref}: {desc.media_type} {desc.digest} is {desc.size} bytes, "
                                  f"more than the {limit} a pull reads into memory")
        self._lease([desc])
        self._fetch(desc)
        return self._p._content.read(desc.digest)

    def _fetch_layers(self, layers: Sequence[Descriptor], indexes: list[int], sink: LayerSink) -> None:
        """Download the layers at ``indexes``, each streamed into ``sink`` on a thread of its own."""
        if not indexes:
            return
        self._lease([layers[i] for i in indexes])
        downloads = ThreadPoolExecutor(self._p._max_downloads, thread_name_prefix="fetch")
        # An unpacker waits for the layers below before it commits, so each gets a thread of its own,
        # started with its download.
        unpacks = ThreadPoolExecutor(len(indexes), thread_name_prefix="unpack")
        unpacking: list[Future[None]] = []
        lock = threading.Lock()

        def unpack(i: int, stream: LayerStream) -> None:
            with lock:
                unpacking.append(unpacks.submit(sink.consume, i, stream))

        try:
            fetches = [downloads.submit(self._fetch_into, layers[i], i, unpack) for i in indexes]
            # A failed unpack cancels the pull's token, which ends the downloads too.
            wait(fetches, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() is not None for f in fetches):
                self._cancel.cancel("another layer of this pull failed")
            wait(fetches)
            with lock:
                started = list(unpacking)
            _first_error(fetches + started, self._cancel)
        finally:
            downloads.shutdown(wait=True, cancel_futures=True)
            unpacks.shutdown(wait=True)

    def _fetch_into(self, desc: Descriptor, index: int, unpack: Callable[[int, LayerStream], None]) -> None:
        stream = LayerStream(self._cancel)
        unpack(index, stream)
        started = time.monotonic()
        try:
            self._fetch(desc, stream)
        except BaseException as exc:
            stream.fail(exc)
            raise
        stream.close()
        self._p._on_layer_fetched(time.monotonic() - started)

    def _lease(self, descs: Sequence[Descriptor]) -> None:
        """Hold blobs under the pull's lease, so a collection leaves them; one transaction for all layers."""
        with self._p._db.transaction() as tx:
            for desc in descs:
                tx.add_lease_resource(self._namespace, self._lease_id, LEASE_CONTENT, str(desc.digest))

    def _fetch(self, desc: Descriptor, stream: LayerStream | None = None) -> None:
        """Download ``desc`` (leased already) into the content store, feeding ``stream`` as it arrives."""
        content = self._p._content
        if content.exists(desc.digest):
            _replay(content, desc, stream)
            return
        with content.writer(_ref_key(desc), desc.digest, desc.size, cancel=self._cancel) as writer:
            if content.exists(desc.digest):
                _replay(content, desc, stream)  # another pull committed it while we waited for the ingest
                return
            log.debug("pull.fetch", digest=str(desc.digest), size=desc.size, resume_at=writer.offset)
            if stream is not None:
                writer.tee(stream.feed)
            self._client.fetch(desc, writer)

    def _drop_ingests(self, layers: list[Descriptor]) -> None:
        for desc in layers:
            with contextlib.suppress(NotFound):
                self._p._content.abort(_ref_key(desc))


def _first_error(futures: list[Future[None]], cancel: Cancellation) -> None:
    """Wait for all; after the first failure the rest are stopped, and the error that stopped them is raised."""
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f in done and f.exception() is not None]
    if not failed:
        return
    first = failed[0].exception()
    assert first is not None
    cancel.cancel(f"another layer of this pull failed: {first}")
    wait(pending)
    # Layers stopped because of the failure fail with Cancelled; the cause is what the caller needs.
    causes = [e for f in futures if (e := f.exception()) is not None and not isinstance(e, Cancelled)]
    raise causes[0] if causes else first


def _replay(content: ContentStore, desc: Descriptor, stream: LayerStream | None) -> None:
    """Feed a blob the store has already (another image's layer) to the unpacker."""
    if stream is None:
        return
    with content.reader(desc.digest) as blob:
        offset = 0
        while chunk := blob.read(1 << 20):
            stream.feed(offset, chunk)
            offset += len(chunk)


def _ref_key(desc: Descriptor) -> str:
    """The ingest ref containerd uses for a descriptor, e.g. ``layer-sha256:...``."""
    if desc.media_type in mediatypes.INDEX_TYPES:
        kind = "index"
    elif desc.media_type in mediatypes.MANIFEST_TYPES:
        kind = "manifest"
    elif desc.media_type in mediatypes.CONFIG_TYPES:
        kind = "config"
    elif mediatypes.layer_compression(desc.media_type) is not None:
        kind = "layer"
    else:
        kind = "unknown"
    return f"{kind}-{desc.digest}"


def _index_labels(index: Index) -> dict[str, str]:
    return {f"containerd.io/gc.ref.content.m.{i}": str(d.digest) for i, d in enumerate(index.manifests)}


def _manifest_labels(manifest: Manifest) -> dict[str, str]:
    labels = {"containerd.io/gc.ref.content.config": str(manifest.config.digest)}
    labels.update({f"containerd.io/gc.ref.content.l.{i}": str(d.digest) for i, d in enumerate(manifest.layers)})
    return labels


def _with_source(tx: Tx, namespace: str, item: _Fetched, ref: Reference) -> dict[str, str]:
    key = LABEL_DISTRIBUTION_SOURCE + ref.hostname
    try:
        existing = tx.get_content(namespace, item.desc.digest).labels.get(key)
    except NotFound:
        existing = None
    return {**item.labels, key: distribution_source_label(existing, ref.path)}


def distribution_source_label(existing: str | None, repository: str) -> str:
    """containerd keeps every repository a blob came from, sorted and comma separated."""
    repos = set(existing.split(",")) if existing else set()
    repos.add(repository)
    return ",".join(sorted(repos))
