"""The CRI view of images: metadata records grouped by image id.

containerd's CRI keeps three image records per pull (by tag, by repo digest and
by id), all pointing at the same target. Here they are read back and grouped by
the config digest they lead to, which is the CRI image id. Resolving a target to
its config reads immutable content, so the result is cached by target digest; the
cache forgets targets no record names any more and is bounded in entries and in
config bytes.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from errdefs import InvalidArgument, NotFound
from store import mediatypes
from store.content import ContentStore
from store.descriptor import Descriptor, ImageConfig, Index, Manifest
from store.digest import Digest
from store.identity import chain_id
from store.lru import LRUCache
from store.metadata import ImageRecord, MetadataDB, Tx
from store.platforms import Platform, ranked
from store.reference import Reference

__all__ = ["CRIImage", "ImageCatalog", "image_record_labels"]

_EPOCH = datetime.fromtimestamp(0, UTC)
# The label containerd's CRI sets on the image records it manages.
LABEL_MANAGED = "io.cri-containerd.image"
# Configs may be up to 32 MiB each; the cache holds at most this many bytes of them.
_CACHE_ENTRIES = 1024
_CACHE_CONFIG_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class _Resolved:
    manifest: Descriptor
    config: Descriptor
    image_config: ImageConfig
    size: int


@dataclass(frozen=True, slots=True)
class CRIImage:
    id: str
    names: tuple[str, ...]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    target: Descriptor
    manifest: Descriptor
    config: ImageConfig

    @property
    def chain_id(self) -> str:
        return str(chain_id(self.config.diff_ids))


class ImageCatalog:
    def __init__(self, db: MetadataDB, content: ContentStore, namespace: str, platform: Platform) -> None:
        self._db = db
        self._content = content
        self._namespace = namespace
        self._platform = platform
        self._resolved: LRUCache[Digest, _Resolved] = LRUCache(
            _CACHE_ENTRIES, _CACHE_CONFIG_BYTES, lambda r: r.config.size)

    @property
    def cached(self) -> int:
        """How many resolved targets are held (for tests and metrics)."""
        return len(self._resolved)

    def all(self) -> list[CRIImage]:
        groups: dict[Digest, list[ImageRecord]] = defaultdict(list)
        records = self._db.list_images(self._namespace)
        self._resolved.keep_only(record.target.digest for record in records)
        for record in records:
            try:
                resolved = self._resolve_target(record.target)
            except (NotFound, InvalidArgument):
                continue  # a record whose content is gone or foreign is not a CRI image
            groups[resolved.config.digest].append(record)
        return [self._image(records) for records in groups.values()]

    def get(self, ref_or_id: str) -> CRIImage:
        """Find an image by id, id prefix, or reference, as containerd's CRI resolves them."""
        images = self.all()
        by_id = {image.id: image for image in images}
        if ref_or_id in by_id:
            return by_id[ref_or_id]
        name = _normalize(ref_or_id)
        for image in images:
            if name in image.names:
                return image
        prefix = ref_or_id.removeprefix("sha256:")
        matches = [image for image in images if image.id.removeprefix("sha256:").startswith(prefix)]
        if prefix and len(matches) == 1:
            return matches[0]
        raise NotFound(f"image {ref_or_id!r}: not found")

    def image_id(self, target: Descriptor) -> Digest:
        """The CRI id (config digest) of an image with this target; NotFound or InvalidArgument when its
        content is not here or is not an image for this platform."""
        return self._resolve_target(target).config.digest

    def _image(self, records: list[ImageRecord]) -> CRIImage:
        # Names sharing a config may point at different manifests (say docker and OCI media types);
        # like containerd's CRI, the image is described by the one pulled first.
        first = min(records, key=lambda r: (r.created_at or _EPOCH, r.name))
        resolved = self._resolve_target(first.target)
        names = tuple(sorted(r.name for r in records))
        tags, digests = [], []
        for name in names:
            if name.startswith("sha256:"):
                continue
            # As containerd: a name:tag@digest reference counts as both.
            ref = Reference.parse(name)
            if ref.digest:
                digests.append(name)
            if ref.tag:
                tags.append(name)
        return CRIImage(str(resolved.config.digest), names, tuple(tags), tuple(digests), resolved.size,
                        first.target, resolved.manifest, resolved.image_config)

    def _resolve_target(self, target: Descriptor) -> _Resolved:
        cached = self._resolved.get(target.digest)
        if cached is not None:
            return cached
        resolved = self._read(target)
        self._resolved.put(target.digest, resolved)
        return resolved

    def _read(self, target: Descriptor) -> _Resolved:
        size = target.size
        manifest_desc = target
        if target.media_type in mediatypes.INDEX_TYPES:
            index = Index.parse(target.media_type, self._content.read(target.digest))
            manifest_desc = self._local_manifest(index)
            size += manifest_desc.size
        manifest = Manifest.parse(manifest_desc.media_type, self._content.read(manifest_desc.digest))
        config = ImageConfig.parse(self._content.read(manifest.config.digest))
        size += manifest.config.size + sum(layer.size for layer in manifest.layers)
        return _Resolved(manifest_desc, manifest.config, config, size)

    def _local_manifest(self, index: Index) -> Descriptor:
        """The best manifest for this platform among those actually pulled."""
        pulled = [desc for desc in index.manifests if self._content.exists(desc.digest)]
        matches = ranked(self._platform, pulled, lambda desc: desc.platform)
        if not matches:
            raise NotFound("no manifest for this platform in the image index")
        return matches[0]


def _normalize(ref_or_id: str) -> str:
    try:
        return str(Reference.parse(ref_or_id))
    except InvalidArgument:
        return ref_or_id



def image_record_labels() -> dict[str, str]:
    return {LABEL_MANAGED: "managed"}


def record_cri_names(tx: Tx, namespace: str, image: ImageRecord, image_id: str) -> None:
    """What containerd's CRI does when an image appears in its namespace (an import, ``ctr images create``):
    the name is labelled as managed by the CRI, and the image's id (its config digest) becomes a name too,
    pointing at the same target."""
    managed = image_record_labels()
    if not managed.items() <= image.labels.items():
        tx.put_image(namespace, ImageRecord(image.name, image.target, {**image.labels, **managed}))
    with contextlib.suppress(NotFound):
        current = tx.get_image(namespace, image_id)
        if current.target.digest == image.target.digest and managed.items() <= current.labels.items():
            return
    tx.put_image(namespace, ImageRecord(image_id, image.target, managed))
