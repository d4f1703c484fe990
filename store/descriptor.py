"""Descriptors and the image documents (index, manifest, config) that hold them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from errdefs import InvalidArgument
from store import mediatypes
from store.digest import Digest
from store.platforms import Platform

__all__ = ["Descriptor", "ImageConfig", "Index", "Manifest", "parse_json", "process_config"]


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_json(cls, doc: Any) -> Descriptor:
        if not isinstance(doc, dict):
            raise InvalidArgument("malformed descriptor: not an object")
        size = doc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"malformed descriptor: invalid size {size!r}")
        platform = doc.get("platform")
        return cls(
            media_type=str(doc.get("mediaType", "")),
            digest=Digest.parse(str(doc.get("digest", ""))),
            size=size,
            platform=Platform.from_spec(platform) if isinstance(platform, dict) else None,
            annotations=_string_map(doc.get("annotations"), "descriptor annotations"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, media_type: str, data: bytes) -> Index:
        doc = parse_json(data, "index")
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument("malformed index: no manifests list")
        return cls(media_type, tuple(Descriptor.from_json(m) for m in manifests))


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, media_type: str, data: bytes) -> Manifest:
        doc = parse_json(data, "manifest")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument("malformed manifest: no layers list")
        manifest = cls(media_type, Descriptor.from_json(doc.get("config")),
                       tuple(Descriptor.from_json(layer) for layer in layers))
        manifest._check_media_types()
        return manifest

    def _check_media_types(self) -> None:
        if self.config.media_type not in mediatypes.CONFIG_TYPES:
            raise InvalidArgument(f"unsupported media type {self.config.media_type!r} for image config")
        for layer in self.layers:
            if mediatypes.layer_compression(layer.media_type) is None:
                raise InvalidArgument(f"unsupported media type {layer.media_type!r} for layer {layer.digest}")


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config the runtime reads."""

    platform: Platform
    user: str
    diff_ids: tuple[Digest, ...]
    raw: dict[str, Any] = field(compare=False, hash=False)

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        doc = parse_json(data, "image config")
        rootfs = doc.get("rootfs") or {}
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise InvalidArgument("malformed image config: no rootfs.diff_ids")
        config = doc.get("config")
        if config is None:
            config = {}  # null is an empty config, as Go decodes it
        if not isinstance(config, dict):
            raise InvalidArgument("malformed image config: config is not an object")
        user = config.get("User")
        if user is not None and not isinstance(user, str):
            raise InvalidArgument("malformed image config: config.User is not a string")
        return cls(Platform.from_spec(doc), user or "", tuple(Digest.parse(str(d)) for d in diff_ids), doc)

    @property
    def process(self) -> dict[str, Any]:
        """The ``config`` object (Env, Cmd, Entrypoint, User...); empty when the image gives none."""
        return process_config(self.raw)


def process_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``config`` object of a parsed image config; ``null`` or missing is an empty one."""
    config = raw.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidArgument("malformed image config: config is not an object")
    return config


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"malformed {what}: not an object of strings")
    return dict(value)


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"malformed {what}: {exc}") from exc
    except RecursionError:
        raise InvalidArgument(f"malformed {what}: nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"malformed {what}: not a JSON object")
    return doc
