"""Reproducible image archives, written without docker: layers as tar streams, an image config, and the OCI image
layout (``oci-layout``, ``index.json``, ``blobs/sha256/``) packed into one tarball that ``crishim image import``,
``ctr images import``, ``docker load`` and ``skopeo copy oci-archive:`` read.

The same inputs make the same bytes: members in a fixed order, times fixed at MTIME, owners numeric without
names, layers gzip'd with neither a name nor a time in the gzip header.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["MTIME", "Image", "Layer", "Member", "RunConfig", "tree", "write_image", "write_layer"]

MTIME = 1700000000
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"  # the full name, as containerd's export writes it
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# Not carried into an image from a tree: overlay's own attributes and the build host's security labels.
_SKIPPED_XATTRS = ("trusted.", "security.selinux")


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of a layer: a directory, a regular file (from ``data`` or a ``source`` file), a symlink
    (``link``) or a hard link to an earlier member (``hardlink``)."""

    path: str  # inside the image, without a leading slash
    mode: int = 0o644
    data: bytes | None = None
    source: Path | None = None
    link: str = ""
    hardlink: str = ""
    directory: bool = False
    uid: int = 0
    gid: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Layer:
    path: Path  # the gzip'd tar
    digest: str  # of the gzip'd tar
    size: int
    diff_id: str  # of the tar itself
    created_by: str  # its line in the image's history


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The image config's ``config``: what a container of the image runs unless told otherwise."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Env": list(self.env)}
        if self.entrypoint:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            doc["Cmd"] = list(self.cmd)
        if self.user:
            doc["User"] = self.user
        if self.working_dir:
            doc["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            doc["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        return doc


@dataclass(frozen=True, slots=True)
class Image:
    name: str  # the full reference, e.g. registry.k8s.io/etcd:3.6.8-0
    layers: tuple[Layer, ...]
    config: RunConfig
    architecture: str
    os: str = "linux"


def write_layer(target: Path, members: Iterable[Member], created_by: str) -> Layer:
    """The members, in the order given (parents first), as a gzip'd tar at ``target``."""
    with target.open("wb") as raw:
        compressed = _Digesting(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=6, mtime=0) as zipped:
            plain = _Digesting(cast(IO[bytes], zipped))
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
                for member in members:
                    _add(tar, member)
    return Layer(target, compressed.digest(), compressed.size, plain.digest(), created_by)


def tree(root: Path, prefix: str = "") -> Iterator[Member]:
    """Every directory, regular file, symlink and hard link under ``root``, sorted, as members under
    ``prefix``; anything else (device nodes, sockets, fifos) is left out: a runtime provides its own /dev."""
    seen: dict[tuple[int, int], str] = {}
    for path in _walk(root):
        st = os.lstat(path)
        relative = path.relative_to(root).as_posix()
        name = f"{prefix}{relative}" if relative != "." else prefix.rstrip("/")
        if not name:
            continue
        base = Member(name, stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, xattrs=_xattrs(path))
        if stat.S_ISDIR(st.st_mode):
            yield replace(base, directory=True)
        elif stat.S_ISLNK(st.st_mode):
            yield replace(base, link=os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            first = seen.setdefault((st.st_dev, st.st_ino), name) if st.st_nlink > 1 else name
            yield replace(base, hardlink=first) if first != name else replace(base, source=path)


def write_image(target: Path, image: Image) -> str:
    """``image`` as an OCI layout tarball at ``target``; returns its manifest's digest."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MTIME))
    config = _json({
        "created": created, "architecture": image.architecture, "os": image.os,
        "config": image.config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
        "history": [{"created": created, "created_by": layer.created_by} for layer in image.layers],
    })
    manifest = _json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(OCI_CONFIG, config),
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size} for layer in image.layers],
    })
    tag = image.name.rsplit(":", 1)[1] if ":" in image.name.rsplit("/", 1)[-1] else "latest"
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        **_descriptor(OCI_MANIFEST, manifest),
        "annotations": {ANNOTATION_IMAGE_NAME: image.name, ANNOTATION_REF_NAME: tag},
        "platform": {"architecture": image.architecture, "os": image.os},
    }]})
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        _add(archive, Member("oci-layout", data=_json({"imageLayoutVersion": "1.0.0"})))
        for folder in ("blobs", "blobs/sha256"):
            _add(archive, Member(folder, mode=0o755, directory=True))
        for blob in (config, manifest):
            _add(archive, Member(_blob_path(_digest(blob)), data=blob))
        for layer in _unique(image.layers):
            _add(archive, Member(_blob_path(layer.digest), source=layer.path))
        _add(archive, Member("index.json", data=index))
    return _digest(manifest)


def _add(tar: tarfile.TarFile, member: Member) -> None:
    info = tarfile.TarInfo(member.path)
    info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, MTIME
    info.uname = info.gname = ""
    if member.xattrs:
        info.pax_headers = {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
                            for key, value in sorted(member.xattrs.items())}
    if member.directory:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif member.link:
        info.type, info.linkname = tarfile.SYMTYPE, member.link
        tar.addfile(info)
    elif member.hardlink:
        info.type, info.linkname = tarfile.LNKTYPE, member.hardlink
        tar.addfile(info)
    elif member.data is not None:
        info.size = len(member.data)
        tar.addfile(info, io.BytesIO(member.data))
    else:
        assert member.source is not None, f"{member.path}: a member needs data or a source"
        with member.source.open("rb") as source:
            info.size = os.fstat(source.fileno()).st_size
            tar.addfile(info, source)


def _walk(root: Path) -> Iterator[Path]:
    yield root
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)
        else:
            yield path


def _xattrs(path: Path) -> dict[str, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)
            if not name.startswith(_SKIPPED_XATTRS)}


def _unique(layers: Sequence[Layer]) -> list[Layer]:
    return list({layer.digest: layer for layer in layers}.values())


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self._out, self._hash, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        self._hash.update(data)
        written = self._out.write(data)
        self.size += written
        return written

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()
