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


def push_variant(registry: Registry, base_repository: str, base_tag: str, repository: str,
                 edit_config: Any = None, edit_manifest: Any = None, raw_manifest: bytes | None = None) -> str:
    """Push ``base`` again as ``repository:v1`` with its config and manifest edited; return the reference.

    ``edit_config(doc)`` and ``edit_manifest(doc)`` change the parsed documents in place; ``raw_manifest``
    replaces the manifest bytes outright (for documents no JSON encoder would write).
    """
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30) as client:
        got = client.get(f"/v2/{base_repository}/manifests/{base_tag}", headers={"Accept": accept})
        got.raise_for_status()
        manifest = got.json()
        media_type = got.headers["Content-Type"]
        blobs = {d["digest"]: client.get(f"/v2/{base_repository}/blobs/{d['digest']}").content
                 for d in [manifest["config"], *manifest["layers"]]}
    for data in blobs.values():
        push_blob(registry, repository, data)
    config = json.loads(blobs[manifest["config"]["digest"]])
    if edit_config is not None:
        edit_config(config)
        config_bytes = json.dumps(config).encode()
        manifest["config"] = {**manifest["config"], "digest": push_blob(registry, repository, config_bytes),
                              "size": len(config_bytes)}
    if edit_manifest is not None:
        edit_manifest(manifest)
    if raw_manifest is None:
        push_manifest(registry, repository, "v1", media_type, manifest)
    else:
        with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=30) as client:
            client.put(f"/v2/{repository}/manifests/v1", content=raw_manifest,
                       headers={"Content-Type": media_type}).raise_for_status()
    return f"{registry.host}/{repository}:v1"
