"""Importing an image archive as images of a namespace, as containerd 1.6's ``ctr images import`` does.

The archive's blobs are staged under a lease (``store.archive``); its index names the images. A manifest in
it is named by its ``io.containerd.image.name`` annotation, else by its ``org.opencontainers.image.ref.name``
made a full name with a prefix (``import-<date>`` unless a base name is given, and then only names under it
are kept), and with ``digests`` also ``<prefix>@<manifest digest>``. The images' content is walked with the
platform filter (this host's, one asked for, or all) to label each document with the
``containerd.io/gc.ref.content.*`` references to its children. The images are unpacked for this host's platform
(or the one asked for), and their content labels, records and the end of the lease land in one transaction,
so a failed import leaves no image; what nothing refers to goes at the next garbage collection.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import BinaryIO

from errdefs import InvalidArgument, NotFound
from store import mediatypes
from store.archive import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, read_archive
from store.content import ContentStore, Staged
from store.descriptor import Descriptor, ImageConfig, Index, parse_json
from store.digest import Digest
from store.gc import LABEL_EXPIRE, LEASE_CONTENT
from store.metadata import ImageRecord, Lease, MetadataDB, Tx
from store.platforms import Platform, ranked
from store.pull import ContentLabels
from store.reference import Reference

__all__ = ["ImportOptions", "ImportedImage", "Importer", "UnpackTarget"]

_LEASE_TTL = timedelta(hours=24)
_LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
_REF = "containerd.io/gc.ref.content."


@dataclass(frozen=True, slots=True)
class ImportOptions:
    base_name: str = ""  # ctr --base-name: the prefix of tag-only names, and only names under it are kept
    digests: bool = False  # ctr --digests: also name each manifest <prefix>@<digest>
    skip_digest_for_named: bool = False  # ctr --skip-digest-for-named
    index_name: str = ""  # ctr --index-name: keep the archive's index as an image of this name
    all_platforms: bool = False  # ctr --all-platforms: content of every platform, not just this host's
    platform: Platform | None = None  # ctr --platform: content and unpack of this platform only
    unpack: bool = True  # ctr --no-unpack when False
    name: str = ""  # the one image the archive holds gets this name instead of the archive's


@dataclass(frozen=True, slots=True)
class UnpackTarget:
    """What an unpacker needs of an image: its layers in order, its config and their diff IDs."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    image_config: ImageConfig


@dataclass(frozen=True, slots=True)
class ImportedImage:
    name: str
    target: Descriptor
    unpacked: bool  # False when nothing in it is for the unpack platform, or unpacking was not asked for


@dataclass(slots=True)
class _Import:
    namespace: str
    lease: Lease
    blobs: dict[Digest, int] = field(default_factory=dict)
    labels: ContentLabels = field(default_factory=dict)


Unpack = Callable[[UnpackTarget], ContentLabels]
Record = Callable[[Tx, list[ImportedImage]], None]


class Importer:
    def __init__(self, content: ContentStore, db: MetadataDB, platform: Platform) -> None:
        self._content = content
        self._db = db
        self._platform = platform

    def import_archive(self, namespace: str, stream: BinaryIO, options: ImportOptions, unpack: Unpack,
                       record: Record = lambda tx, images: None) -> list[ImportedImage]:
        """Import the archive read from ``stream``; ``record`` runs in the final transaction, after the
        images are recorded (the CRI names them by id there)."""
        work = _Import(namespace, self._create_lease(namespace))
        try:
            archive = read_archive(stream, self._content, f"import-{work.lease.id}-", lambda s: self._hold(work, s),
                                   lambda d: self._compressed_form(namespace, d))
            work.blobs = archive.blobs
            records = self._name(archive.index, options)
            self._walk(archive.index, self._matcher(options), work.labels)
            unpacked = self._unpack_all(records, options, unpack, work.labels)
            images = [ImportedImage(name, target, name in unpacked) for name, target in records.items()]
            self._commit(work, images, record)
        except BaseException:
            with self._db.transaction() as tx:
                tx.delete_lease(namespace, work.lease.id)
            raise
        return images

    def config_for(self, target: Descriptor) -> Descriptor | None:
        """The config of the image ``target`` is for this host's platform, None when it has none."""
        unpack_target = self._unpack_target(target, self._platform)
        return None if unpack_target is None else unpack_target.config

    # --- blobs -----------------------------------------------------------------------------------------

    def _create_lease(self, namespace: str) -> Lease:
        expire = (datetime.now(UTC) + _LEASE_TTL).isoformat()
        with self._db.transaction() as tx:
            return tx.create_lease(namespace, Lease(f"import-{uuid.uuid4().hex}", {LABEL_EXPIRE: expire}))

    def _hold(self, work: _Import, staged: Staged) -> None:
        # In one transaction, which a collection's unlinking also needs: it sees the blob leased or not at all.
        with self._db.transaction() as tx:
            tx.add_lease_resource(work.namespace, work.lease.id, LEASE_CONTENT, str(staged.digest))
            staged.commit()

    def _compressed_form(self, namespace: str, uncompressed: Digest) -> Descriptor | None:
        for record in self._db.list_content(namespace):
            if record.labels.get(_LABEL_UNCOMPRESSED) == str(uncompressed) and record.digest != uncompressed:
                return Descriptor("", record.digest, record.size)
        return None

    # --- names -----------------------------------------------------------------------------------------

    def _name(self, index: Descriptor, options: ImportOptions) -> dict[str, Descriptor]:
        """Image name → target, later names replacing earlier ones, as containerd updates them in turn."""
        prefix = options.base_name or f"import-{date.today():%Y-%m-%d}"
        manifests = self._read_index(index).manifests
        records: dict[str, Descriptor] = {}
        if options.index_name:
            records[options.index_name] = index
        if options.name:
            distinct = {m.digest for m in manifests}
            if len(distinct) != 1:
                raise InvalidArgument(f"a name is given, but the archive holds {len(distinct)} images")
        for manifest in manifests:
            name = str(Reference.parse(options.name)) if options.name else _image_name(manifest, prefix,
                                                                                      bool(options.base_name))
            if name:
                records[name] = manifest
            if options.digests and not (options.skip_digest_for_named and name):
                records[f"{prefix}@{manifest.digest}"] = manifest
        if not records:
            raise NotFound("the archive names no image: give a name, or ask for digest names")
        return records

    # --- content labels --------------------------------------------------------------------------------

    def _matcher(self, options: ImportOptions) -> Callable[[Platform], bool]:
        if options.all_platforms:
            return lambda platform: True
        if options.platform is not None:
            wanted = options.platform
            return lambda platform: platform.normalized() == wanted
        return lambda platform: self._platform.rank(platform) is not None

    def _walk(self, desc: Descriptor, matcher: Callable[[Platform], bool], labels: ContentLabels) -> None:
        children = [c for c in self._children(desc) if c.platform is None or matcher(c.platform)]
        if children:
            labels.setdefault(desc.digest, {}).update(_gc_labels(children))
        for child in children:
            self._walk(child, matcher, labels)

    def _children(self, desc: Descriptor) -> list[Descriptor]:
        if desc.media_type in mediatypes.INDEX_TYPES:
            return list(self._read_index(desc).manifests)
        if desc.media_type in mediatypes.MANIFEST_TYPES:
            doc = parse_json(self._read(desc), "manifest")
            return [Descriptor.from_json(doc.get("config")),
                    *(Descriptor.from_json(layer) for layer in doc.get("layers") or [])]
        return []

    def _read_index(self, desc: Descriptor) -> Index:
        return Index.parse(desc.media_type, self._read(desc))

    def _read(self, desc: Descriptor) -> bytes:
        try:
            return self._content.read(desc.digest)
        except NotFound:
            raise NotFound(f"{desc.media_type} {desc.digest}: not in the archive") from None

    # --- unpack ----------------------------------------------------------------------------------------

    def _unpack_all(self, records: dict[str, Descriptor], options: ImportOptions, unpack: Unpack,
                    labels: ContentLabels) -> set[str]:
        if not options.unpack:
            return set()
        platform = options.platform or self._platform
        unpacked: set[str] = set()
        done: dict[Digest, bool] = {}
        for name, target in records.items():
            if target.digest not in done:
                unpack_target = self._unpack_target(target, platform)
                if unpack_target is not None:
                    for digest, extra in unpack(unpack_target).items():
                        labels.setdefault(digest, {}).update(extra)
                done[target.digest] = unpack_target is not None
            if done[target.digest]:
                unpacked.add(name)
        return unpacked

    def _unpack_target(self, target: Descriptor, platform: Platform) -> UnpackTarget | None:
        manifest = self._manifest_for(target, platform)
        if manifest is None:
            return None
        children = self._children(manifest)
        config, layers = children[0], tuple(children[1:])
        image_config = ImageConfig.parse(self._read(config))
        if manifest is target and platform.rank(image_config.platform) is None:
            return None
        if len(image_config.diff_ids) != len(layers):
            raise InvalidArgument(f"image {manifest.digest}: config lists {len(image_config.diff_ids)} diff IDs "
                                  f"for {len(layers)} layers")
        return UnpackTarget(config, layers, image_config)

    def _manifest_for(self, target: Descriptor, platform: Platform) -> Descriptor | None:
        for _ in range(4):
            if target.media_type in mediatypes.MANIFEST_TYPES:
                return target
            if target.media_type not in mediatypes.INDEX_TYPES:
                return None
            present = [m for m in self._read_index(target).manifests if self._content.exists(m.digest)]
            matches = ranked(platform, present, lambda m: m.platform)
            if not matches:
                return None
            target = matches[0]
        return None

    # --- records ---------------------------------------------------------------------------------------

    def _commit(self, work: _Import, images: list[ImportedImage], record: Record) -> None:
        with self._db.transaction() as tx:
            for digest, size in work.blobs.items():
                tx.put_content(work.namespace, digest, size, work.labels.get(digest, {}))
            for image in images:
                try:
                    labels = tx.get_image(work.namespace, image.name).labels  # an update changes only the target
                except NotFound:
                    labels = {}
                tx.put_image(work.namespace, ImageRecord(image.name, image.target, labels))
            record(tx, images)
            tx.delete_lease(work.namespace, work.lease.id)


def _image_name(manifest: Descriptor, prefix: str, only_under_prefix: bool) -> str:
    name = manifest.annotations.get(ANNOTATION_IMAGE_NAME, "")
    if name:
        return name
    ref = manifest.annotations.get(ANNOTATION_REF_NAME, "")
    if not ref:
        return ""
    if any(c in ref for c in "/:@"):
        # A full reference: kept as it is, unless a base name asks for names under it only.
        return ref if not only_under_prefix or _under(ref, prefix) else ""
    return f"{prefix}:{ref}"


def _under(ref: str, prefix: str) -> bool:
    return ref.startswith(prefix) and (len(ref) == len(prefix) or ref[len(prefix)] in "/:@")


def _gc_labels(children: list[Descriptor]) -> dict[str, str]:
    """containerd's ChildGCLabels: a numbered key per kind of child, the config's without a number."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for child in children:
        key = _gc_key(child.media_type)
        n = counts.get(key, 0)
        counts[key] = n + 1
        labels[f"{key}{n}" if n > 0 or key.endswith(".") else key] = str(child.digest)
    return labels


def _gc_key(media_type: str) -> str:
    if media_type in mediatypes.CONFIG_TYPES:
        return _REF + "config"
    if media_type in mediatypes.MANIFEST_TYPES:
        return _REF + "m."
    if media_type.startswith(("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")):
        return _REF + "l."
    return _REF
