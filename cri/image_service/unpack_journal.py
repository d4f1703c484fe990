"""Layers committed before their files are known to be on disk, kept so a restart after a crash can redo them.

A pull commits each layer snapshot at once and leaves the writeback to the kernel; a background sync then
makes the filesystem write everything back (syncfs). Until a sync that began after a layer's commit has
ended, a power cut may lose some of its files while its record survives, so the layer is written to this
journal before its commit: one small synced file per pull, naming every layer it is to unpack, written before
its first commit. A sync drops the entries of pulls that had ended when it began. After
an unclean shutdown the entries left name exactly the layers that may be incomplete: start-up removes them
and unpacks them again from their blobs. A clean shutdown syncs and leaves the journal empty.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

from store.content import fsync_dir
from store.descriptor import Descriptor, ImageConfig
from store.digest import Digest
from store.identity import chain_ids

__all__ = ["JournalEntry", "UnpackJournal"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """Layers of one image (``pending``, by index) committed before their files are known to be on disk,
    with the whole image: enough to unpack any of them again."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    image_config: ImageConfig
    pending: tuple[int, ...]

    @classmethod
    def of(cls, config: Descriptor, layers: tuple[Descriptor, ...], diff_ids: tuple[Digest, ...],
           pending: tuple[int, ...]) -> JournalEntry:
        return cls(config, layers, _diff_ids_config(diff_ids), pending)

    def chain(self, index: int) -> str:
        return str(chain_ids(self.image_config.diff_ids[: index + 1])[-1])

    def upto(self, index: int) -> JournalEntry:
        """The image cut after layer ``index``, that layer pending: what unpacks it again."""
        return JournalEntry(self.config, self.layers[: index + 1],
                            _diff_ids_config(self.image_config.diff_ids[: index + 1]), (index,))

    def to_json(self) -> str:
        return json.dumps({"config": _desc(self.config), "layers": [_desc(d) for d in self.layers],
                           "diff_ids": [str(d) for d in self.image_config.diff_ids], "pending": list(self.pending)})

    @classmethod
    def from_json(cls, text: str) -> JournalEntry:
        doc = json.loads(text)
        diff_ids = tuple(Digest.parse(str(d)) for d in doc["diff_ids"])
        # An entry without "pending" names one layer, the image's last.
        pending = tuple(int(i) for i in doc.get("pending", [len(diff_ids) - 1]))
        return cls(_parse_desc(doc["config"]), tuple(_parse_desc(d) for d in doc["layers"]),
                   _diff_ids_config(diff_ids), pending)


class UnpackJournal:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def record(self, entry: JournalEntry) -> str:
        """Durably note ``entry`` (its file and its name are synced before this returns); its name."""
        self._folder.mkdir(parents=True, exist_ok=True)
        name = secrets.token_hex(16)
        temporary = self._folder / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, entry.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, self._folder / name)
        fsync_dir(self._folder)
        return name

    def names(self) -> list[str]:
        if not self._folder.exists():
            return []
        return [p.name for p in self._folder.iterdir() if not p.name.startswith(".")]

    def entries(self) -> list[JournalEntry]:
        found = []
        for name in self.names():
            try:
                found.append(JournalEntry.from_json((self._folder / name).read_text()))
            except (OSError, ValueError, KeyError, IndexError) as exc:
                log.warning("unpack.journal_entry_unreadable", entry=name, error=str(exc))
        return found

    def forget(self, names: list[str]) -> None:
        """Drop entries a finished sync covered (the next start would redo them needlessly, never wrongly)."""
        for name in names:
            (self._folder / name).unlink(missing_ok=True)


def _diff_ids_config(diff_ids: tuple[Digest, ...]) -> ImageConfig:
    doc = {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}}
    return ImageConfig.parse(json.dumps(doc).encode())


def _desc(desc: Descriptor) -> dict[str, object]:
    return {"mediaType": desc.media_type, "digest": str(desc.digest), "size": desc.size}


def _parse_desc(doc: dict[str, object]) -> Descriptor:
    return Descriptor(str(doc["mediaType"]), Digest.parse(str(doc["digest"])), int(str(doc["size"])))
