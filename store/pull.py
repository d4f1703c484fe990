"""Pulling an image into the content store, labelled the way containerd labels it.

The reference is resolved to an index or manifest; for an index the manifest
for this platform is chosen; then config and layers are fetched concurrently.
Blobs fetched so far are held by a lease so a collection running meanwhile
keeps them. Content records, their labels and whatever the caller records (the
image names) land in one transaction at the end, so a failed pull leaves no
image behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from errdefs import InvalidArgument, NotFound
from store import mediatypes
from store.cancel import Cancellation
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig, Index, Manifest
from store.digest import Digest
from store.gc import LABEL_EXPIRE, LEASE_CONTENT
from store.identity import chain_ids
from store.metadata import Lease, MetadataDB, Tx
from store.platforms import Platform, ranked
from store.reference import Reference
from store.remote import Credentials, HostsConfig, RegistryClient

__all__ = ["ContentLabels", "PulledImage", "Puller", "distribution_source_label"]

log = structlog.get_logger(__name__)

LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
_LEASE_TTL = timedelta(hours=24)
# Labels to add to blobs, by digest.
ContentLabels = dict[Digest, dict[str, str]]
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
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self._content = content
        self._db = db
        self._hosts = hosts
        self._platform = platform
        self._max_downloads = max(1, max_concurrent_downloads)
        self._progress_timeout = progress_timeout
        self._on_bytes = on_bytes

    def pull(self, namespace: str, ref: Reference, credentials: Credentials | None,
             record: Callable[[Tx, PulledImage], None] = lambda tx, image: None,
             unpack: Callable[[PulledImage], ContentLabels] = lambda image: {},
             have_layer: Callable[[Digest], bool] = lambda chain: False,
             cancel: Cancellation | None = None) -> PulledImage:
        """Fetch ``ref`` and commit its content.

        ``have_layer(chain ID)`` tells which layers need no download (they are
        unpacked already); ``unpack`` runs once everything is fetched and returns
        more labels for the image's blobs; ``record`` runs inside the final
        transaction. Once ``cancel`` is set the pull stops at its next chunk and
        fails with Cancelled; its lease goes, its partial downloads stay in ingest/.
        """
        cancel = cancel or Cancellation()
        lease = self._create_lease(namespace)
        try:
            with self._client(ref, credentials, cancel) as client:
                image, fetched = _Pull(self, client, namespace, lease.id, ref, have_layer, cancel).run()
            cancel.check()
            extra = unpack(image)
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
                 ref: Reference, have_layer: Callable[[Digest], bool], cancel: Cancellation) -> None:
        self._have_layer = have_layer
        self._cancel = cancel
        self._p = puller
        self._client = client
        self._namespace = namespace
        self._lease_id = lease_id
        self._ref = ref

    def run(self) -> tuple[PulledImage, list[_Fetched]]:
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
        # Like containerd, a layer whose snapshot exists already is not downloaded again.
        missing = [layer for layer, chain in zip(manifest.layers, chain_ids(config.diff_ids), strict=True)
                   if not self._have_layer(chain)]
        self._fetch_all(missing)
        fetched += [_Fetched(d, {}) for d in missing]
        return PulledImage(self._ref, target, manifest_desc, manifest.config, manifest.layers, config), fetched

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
        self._fetch(desc)
        return self._p._content.read(desc.digest)

    def _fetch_all(self, descs: Iterable[Descriptor]) -> None:
        pool = ThreadPoolExecutor(self._p._max_downloads, thread_name_prefix="fetch")
        try:
            for future in [pool.submit(self._fetch, d) for d in descs]:
                future.result()
        finally:
            # After a failure, downloads not started yet are dropped instead of run for nothing.
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, desc: Descriptor) -> None:
        content = self._p._content
        with self._p._db.transaction() as tx:
            tx.add_lease_resource(self._namespace, self._lease_id, LEASE_CONTENT, str(desc.digest))
        if content.exists(desc.digest):
            return
        with content.writer(_ref_key(desc), desc.digest, desc.size, cancel=self._cancel) as writer:
            if content.exists(desc.digest):
                return  # another pull committed it while we waited for the ingest
            log.debug("pull.fetch", digest=str(desc.digest), size=desc.size, resume_at=writer.offset)
            self._client.fetch(desc, writer)


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
