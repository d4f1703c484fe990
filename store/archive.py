"""Reading an image archive into the content store, as containerd 1.6's ``images/archive`` importer does.

Two formats are understood:

- an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``), as ``skopeo copy ... oci-archive:`` and the
  ``docker save`` of Docker 25 and later write it: its ``index.json`` is the archive's index;
- a docker-archive (``manifest.json`` naming each image's config, layer files and RepoTags), as ``docker save``
  and ``skopeo copy ... docker-archive:`` write it: a Docker manifest is made for each image and an index
  lists it once per RepoTag, named by the ``io.containerd.image.name`` annotation (``busybox:1`` becomes
  ``docker.io/library/busybox:1``).

Every regular file but ``oci-layout`` and ``manifest.json`` is staged as a blob, named by its digest whatever its
path; what no image refers to is left for garbage collection, as in containerd. The archive is read once, in
order, so it may come from a pipe.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from errdefs import InvalidArgument
from store import mediatypes
from store.content import ContentStore, Staged
from store.descriptor import Descriptor, parse_json
from store.digest import Digest, sha256_of
from store.platforms import Platform
from store.reference import Reference

__all__ = ["ANNOTATION_IMAGE_NAME", "ANNOTATION_REF_NAME", "Archive", "read_archive"]

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
_LAYOUT_FILE = "oci-layout"
_DOCKER_MANIFEST_FILE = "manifest.json"
# The largest oci-layout or manifest.json read into memory.
_MAX_JSON = 20 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# A compressed blob already stored whose uncompressed form has this digest (containerd looks for one by its
# containerd.io/uncompressed label), to stand for an uncompressed layer file of a docker-archive.
FindCompressed = Callable[[Digest], Descriptor | None]
# Called with each staged blob before anything else is read; it holds the blob (a lease) and commits it.
Hold = Callable[[Staged], None]


@dataclass(frozen=True, slots=True)
class Archive:
    index: Descriptor  # the archive's index, stored as a blob
    blobs: dict[Digest, int] = field(default_factory=dict)  # every blob stored and its size


@dataclass(slots=True)
class _Reading:
    layout_version: str | None = None
    docker_manifests: list[dict[str, Any]] | None = None
    files: dict[str, Descriptor] = field(default_factory=dict)  # archive path → blob
    symlinks: dict[str, str] = field(default_factory=dict)  # archive path → path it points to


def read_archive(stream: BinaryIO, content: ContentStore, ref_prefix: str, hold: Hold,
                 find_compressed: FindCompressed) -> Archive:
    """Stage the archive's files as blobs (each handed to ``hold``) and return its index.

    ``ref_prefix`` keeps the ingest names of concurrent imports apart.
    """
    reading = _Reading()
    blobs: dict[Digest, int] = {}

    def store(ref: str, reader: BinaryIO, size: int) -> Descriptor:
        staged = content.stage(f"{ref_prefix}{ref}", reader, size)
        hold(staged)
        blobs[staged.digest] = size
        return Descriptor("", staged.digest, size)

    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _read_member(tar, member, reading, store)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a tar archive, or a damaged one: {exc}") from exc
    if reading.layout_version is not None:
        return Archive(_layout_index(reading), blobs)
    if reading.docker_manifests is None:
        raise InvalidArgument("unrecognized image format: neither an OCI image layout (oci-layout, index.json) "
                              "nor a docker-archive (manifest.json)")
    return Archive(_docker_index(reading, content, store, find_compressed), blobs)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, reading: _Reading,
                 store: Callable[[str, BinaryIO, int], Descriptor]) -> None:
    if member.issym():
        reading.symlinks[member.name] = posixpath.normpath(
            posixpath.join(posixpath.dirname(member.name), member.linkname))
    if not member.isreg():
        return
    name = posixpath.normpath(member.name)
    source = cast(BinaryIO, tar.extractfile(member))  # a regular file always has data
    if name == _LAYOUT_FILE:
        layout = _read_json(source, member.size, name)
        reading.layout_version = str(layout.get("imageLayoutVersion") or "") if isinstance(layout, dict) else ""
    elif name == _DOCKER_MANIFEST_FILE:
        reading.docker_manifests = _docker_manifests(_read_json(source, member.size, name))
    else:
        reading.files[name] = store(f"tar-{name}", source, member.size)


def _layout_index(reading: _Reading) -> Descriptor:
    if reading.layout_version != LAYOUT_VERSION:
        raise InvalidArgument(f"unsupported OCI version {reading.layout_version}")
    index = reading.files.get("index.json")
    if index is None:
        raise InvalidArgument(f"missing index.json in OCI layout {LAYOUT_VERSION}")
    return Descriptor(mediatypes.OCI_INDEX, index.digest, index.size)


def _docker_index(reading: _Reading, content: ContentStore, store: Callable[[str, BinaryIO, int], Descriptor],
                  find_compressed: FindCompressed) -> Descriptor:
    files = dict(reading.files)
    for name, target in reading.symlinks.items():
        if target not in files:
            raise InvalidArgument(f"no target for symlink layer from {name!r} to {target!r}")
        files[name] = files[target]
    entries: list[dict[str, Any]] = []
    for image in reading.docker_manifests or []:
        config = files.get(image["Config"])
        if config is None:
            raise InvalidArgument(f"image config {image['Config']!r} not found")
        config = Descriptor(mediatypes.DOCKER_CONFIG, config.digest, config.size)
        layers = [_layer(name, files, content, find_compressed) for name in image["Layers"]]
        manifest = _document(store, {"schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST,
                                     "config": _descriptor_json(config),
                                     "layers": [_descriptor_json(layer) for layer in layers]})
        entry = _descriptor_json(Descriptor(mediatypes.DOCKER_MANIFEST, manifest.digest, manifest.size))
        platform = _config_platform(content, config)
        if not image["RepoTags"]:
            entries.append({**entry, "platform": platform})
        for tag in image["RepoTags"]:
            name = str(Reference.parse(tag))
            # Go writes a descriptor's annotations (keys sorted) before its platform.
            annotations = {ANNOTATION_IMAGE_NAME: name, ANNOTATION_REF_NAME: _object(name)}
            entries.append({**entry, "annotations": dict(sorted(annotations.items())), "platform": platform})
    index = _document(store, {"schemaVersion": 2, "manifests": entries or None})
    return Descriptor(mediatypes.OCI_INDEX, index.digest, index.size)


def _layer(name: str, files: dict[str, Descriptor], content: ContentStore,
           find_compressed: FindCompressed) -> Descriptor:
    blob = files.get(name)
    if blob is None:
        raise InvalidArgument(f"layer {name!r} not found")
    compressed = find_compressed(blob.digest)
    if compressed is not None:
        blob = compressed
    with content.reader(blob.digest) as f:
        head = f.read(10)
    # As containerd 1.6: anything compressed is called gzip; an empty file is an uncompressed layer.
    compressed_data = head.startswith(_GZIP_MAGIC) or head.startswith(_ZSTD_MAGIC)
    media_type = _DOCKER_LAYER_GZIP if compressed_data else _DOCKER_LAYER
    return Descriptor(media_type, blob.digest, blob.size)


def _config_platform(content: ContentStore, config: Descriptor) -> dict[str, str]:
    doc = parse_json(content.read(config.digest), "image config")
    platform = Platform(str(doc.get("os", "")).lower(), str(doc.get("architecture", ""))).normalized()
    # Go's ocispec.Platform: architecture and os always, the variant only when set.
    spec = {"architecture": platform.architecture, "os": platform.os}
    return {**spec, "variant": platform.variant} if platform.variant else spec


def _object(name: str) -> str:
    """containerd's reference.Parse(name).Object: the tag (or digest) part of a full name."""
    at = name.find("@")
    if at != -1:
        return name[at + 1:]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[colon + 1:] if colon > slash else ""


def _document(store: Callable[[str, BinaryIO, int], Descriptor], doc: dict[str, Any]) -> Descriptor:
    """A JSON document made here, as Go's json.Marshal writes it."""
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return store(f"manifest-{sha256_of(data)}", io.BytesIO(data), len(data))


def _descriptor_json(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": str(desc.digest), "size": desc.size}


def _read_json(source: BinaryIO, size: int, name: str) -> Any:
    if size > _MAX_JSON:
        raise InvalidArgument(f"{name}: {size} bytes, more than the {_MAX_JSON} read into memory")
    try:
        return json.loads(source.read(size))
    except ValueError as exc:
        raise InvalidArgument(f"{name}: not JSON: {exc}") from exc


def _docker_manifests(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, list):
        raise InvalidArgument("manifest.json: not a list of images")
    images = []
    for entry in doc:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument("manifest.json: an image without its Config")
        layers, tags = entry.get("Layers") or [], entry.get("RepoTags") or []
        if not all(isinstance(x, str) for x in [*layers, *tags]):
            raise InvalidArgument("manifest.json: Layers and RepoTags must be lists of strings")
        images.append({"Config": entry["Config"], "Layers": layers, "RepoTags": tags})
    return images
