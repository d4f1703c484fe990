"""Minimal reader/writer for OCI image layouts, for the variants umoci and skopeo cannot produce."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Layout:
    def __init__(self, path: Path) -> None:
        self.path = path

    def blob_path(self, digest: str) -> Path:
        algorithm, hexdigest = digest.split(":", 1)
        return self.path / "blobs" / algorithm / hexdigest

    def read(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read(digest))

    def write(self, data: bytes, media_type: str) -> Descriptor:
        digest = sha256_digest(data)
        self.blob_path(digest).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def write_json(self, obj: object, media_type: str) -> Descriptor:
        return self.write(canonical_json(obj), media_type)

    def _index(self) -> dict[str, Any]:
        index: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return index

    def resolve(self, tag: str) -> Descriptor:
        for entry in self._index()["manifests"]:
            if entry.get("annotations", {}).get(REF_NAME) == tag:
                return Descriptor(entry["mediaType"], entry["digest"], entry["size"])
        raise KeyError(f"tag {tag!r} not in {self.path}/index.json")

    def tag(self, tag: str, desc: Descriptor) -> None:
        index = self._index()
        index["manifests"] = [
            e for e in index["manifests"] if e.get("annotations", {}).get(REF_NAME) != tag
        ] + [{**desc.to_json(), "annotations": {REF_NAME: tag}}]
        (self.path / "index.json").write_text(json.dumps(index))
