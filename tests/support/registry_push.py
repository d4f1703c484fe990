"""Pushing hand-made blobs and manifests straight through the distribution API, for images skopeo won't make."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from tests.support.registry import Registry


def push_blob(registry: Registry, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30) as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        started.raise_for_status()
        # The upload URL carries its own state in the query; the digest is added to it.
        location = httpx.URL(started.headers["Location"]).copy_add_param("digest", digest)
        client.put(location, content=data,
                   headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return digest


def push_manifest(registry: Registry, repository: str, tag: str, media_type: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc).encode()
    with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30) as client:
        client.put(f"/v2/{repository}/manifests/{tag}", content=body,
                   headers={"Content-Type": media_type}).raise_for_status()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}
