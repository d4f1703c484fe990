"""Layer tars written entry by entry with Python's tarfile, for images no image builder would produce.

Every entry states its owner, mode and times explicitly, so the expected tree depends on nothing but the
recipe. Whiteouts are written the way the OCI image spec defines them: ``.wh.NAME`` deletes NAME from the
layers below, ``DIR/.wh..wh..opq`` hides everything below DIR.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import zstandard

# A fixed time (2021-01-01T00:00:00Z) for everything that does not test times.
EPOCH = 1609459200
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

GZIP = "gzip"
ZSTD = "zstd"
RAW = "raw"
MEDIA_TYPES = {
    GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
    ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
    RAW: "application/vnd.oci.image.layer.v1.tar",
}


@dataclass(frozen=True)
class Entry:
    """One tar member. ``pax`` holds extra PAX records (``SCHILY.xattr.*``, an exact ``mtime``...)."""

    name: str
    kind: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH
    data: bytes = b""
    linkname: str = ""
    device: tuple[int, int] = (0, 0)
    pax: Mapping[str, str] = field(default_factory=dict)

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = self.kind
        info.mode = self.mode
        info.uid, info.gid = self.uid, self.gid
        info.uname = info.gname = ""
        info.mtime = self.mtime
        info.size = len(self.data) if self.kind == tarfile.REGTYPE else 0
        info.linkname = self.linkname
        info.devmajor, info.devminor = self.device
        info.pax_headers = dict(self.pax)
        return info


def xattrs(values: Mapping[str, str]) -> dict[str, str]:
    """PAX records for extended attributes; a value may carry raw bytes as surrogate escapes."""
    return {f"SCHILY.xattr.{name}": value for name, value in values.items()}


def d(name: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, mtime: int = EPOCH,
      pax: Mapping[str, str] | None = None) -> Entry:
    return Entry(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, uid, gid, mtime, pax=dict(pax or {}))


def f(name: str, data: bytes | str = b"", mode: int = 0o644, *, uid: int = 0, gid: int = 0, mtime: int = EPOCH,
      pax: Mapping[str, str] | None = None) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(name, tarfile.REGTYPE, mode, uid, gid, mtime, data=raw, pax=dict(pax or {}))


def sym(name: str, target: str, *, uid: int = 0, gid: int = 0, mtime: int = EPOCH,
        pax: Mapping[str, str] | None = None) -> Entry:
    return Entry(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime, linkname=target, pax=dict(pax or {}))


def hardlink(name: str, target: str, mode: int = 0o644, *, uid: int = 0, gid: int = 0,
             mtime: int = EPOCH) -> Entry:
    return Entry(name, tarfile.LNKTYPE, mode, uid, gid, mtime, linkname=target)


def fifo(name: str, mode: int = 0o644, *, uid: int = 0, gid: int = 0, mtime: int = EPOCH,
         pax: Mapping[str, str] | None = None) -> Entry:
    return Entry(name, tarfile.FIFOTYPE, mode, uid, gid, mtime, pax=dict(pax or {}))


def chardev(name: str, major: int, minor: int, mode: int = 0o666, *, uid: int = 0, gid: int = 0,
            mtime: int = EPOCH) -> Entry:
    return Entry(name, tarfile.CHRTYPE, mode, uid, gid, mtime, device=(major, minor))


def blockdev(name: str, major: int, minor: int, mode: int = 0o660, *, uid: int = 0, gid: int = 0,
             mtime: int = EPOCH) -> Entry:
    return Entry(name, tarfile.BLKTYPE, mode, uid, gid, mtime, device=(major, minor))


def whiteout(path: str) -> Entry:
    parent, _, base = path.rpartition("/")
    return f(f"{parent}/{WHITEOUT}{base}" if parent else f"{WHITEOUT}{base}")


def opaque(directory: str) -> Entry:
    return f(f"{directory.rstrip('/')}/{OPAQUE}")


@dataclass(frozen=True)
class Layer:
    entries: tuple[Entry, ...]
    compression: str = GZIP
    tar_format: int = tarfile.PAX_FORMAT
    global_pax: Mapping[str, str] = field(default_factory=dict)  # a PAX global header first, if any

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.compression]


def layer(*entries: Entry, compression: str = GZIP, tar_format: int = tarfile.PAX_FORMAT,
          global_pax: Mapping[str, str] | None = None) -> Layer:
    return Layer(tuple(entries), compression, tar_format, dict(global_pax or {}))


def tar_bytes(entries: Iterable[Entry], tar_format: int = tarfile.PAX_FORMAT,
              global_pax: Mapping[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tar_format, encoding="utf-8", errors="surrogateescape",
                      pax_headers=dict(global_pax or {})) as archive:
        for entry in entries:
            info = entry.tarinfo()
            archive.addfile(info, io.BytesIO(entry.data) if info.isreg() else None)
    return buf.getvalue()


def compress(raw: bytes, compression: str) -> bytes:
    if compression == GZIP:
        return gzip.compress(raw, mtime=0)
    if compression == ZSTD:
        return zstandard.ZstdCompressor().compress(raw)
    if compression == RAW:
        return raw
    raise ValueError(f"unknown compression {compression!r}")


@dataclass(frozen=True)
class BuiltLayer:
    blob: bytes
    media_type: str
    diff_id: str  # sha256 of the uncompressed tar


def build_layer(spec: Layer) -> BuiltLayer:
    raw = tar_bytes(spec.entries, spec.tar_format, spec.global_pax)
    return BuiltLayer(compress(raw, spec.compression), spec.media_type, "sha256:" + hashlib.sha256(raw).hexdigest())


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]) (the OCI image spec's ChainID)."""
    chains: list[str] = []
    for diff in diff_ids:
        if chains:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
        else:
            chains.append(diff)
    return chains
