"""The catalogue of test images: build, push with skopeo, then describe them as the registry serves them."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.image_build import add_multiplatform, add_uncompressed, build_base_layout, zstd_layout
from tests.support.layout import DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, Layout
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.tools import binary

TAG = "v1"

# name -> (layout tag, repository, extra skopeo arguments). Kept in pull order for the oracle comparisons.
PLAN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "oci": ("base", "test/busybox-oci", ("--preserve-digests",)),
    "docker": ("base", "test/busybox-docker", ("--format", "v2s2")),
    "zstd": ("zstd", "test/busybox-zstd", ("--preserve-digests",)),
    "uncompressed": ("raw", "test/busybox-raw", ("--preserve-digests",)),
    "multiarch": ("multi", "test/busybox-multi", ("--all", "--preserve-digests")),
    "user1000": ("user1000", "test/busybox-user1000", ("--preserve-digests",)),
    "nobody": ("nobody", "test/busybox-nobody", ("--preserve-digests",)),
}
PULLABLE = tuple(PLAN)  # everything on the open registry
AUTH = "auth"  # the one image on the password-protected registry
AUTH_REPOSITORY = "test/busybox-private"

ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))


@dataclass(frozen=True)
class PlatformManifest:
    platform: str  # "linux/amd64", "linux/arm/v7"
    digest: str
    config_digest: str
    layer_digests: tuple[str, ...]


@dataclass(frozen=True)
class PushedImage:
    name: str
    registry: str  # "127.0.0.1:PORT"
    repository: str  # "test/busybox-oci"
    tag: str
    digest: str  # what the registry serves for the tag: a manifest or an index
    media_type: str
    config_digest: str  # for an index: the linux/amd64 entry's
    layer_digests: tuple[str, ...]
    manifest_size: int
    platforms: tuple[PlatformManifest, ...] = ()  # index entries, empty for a single manifest

    @property
    def repo(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def repo_digest(self) -> str:
        return f"{self.repo}@{self.digest}"

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def platform(self, name: str) -> PlatformManifest:
        return next(p for p in self.platforms if p.platform == name)


def build_and_push(workdir: Path, registry: Registry, auth_registry: Registry) -> dict[str, PushedImage]:
    base = build_base_layout(workdir)
    add_uncompressed(base, "base", "raw")
    add_multiplatform(base, "base", "multi")
    layouts = {"zstd": zstd_layout(base, "base", workdir)}
    jobs = [(layouts.get(tag, base), tag, registry, repo, extra) for tag, repo, extra in PLAN.values()]
    jobs.append((base, "base", auth_registry, AUTH_REPOSITORY, ("--preserve-digests",)))
    # The converted image goes first, alone: skopeo may otherwise reuse a blob another push has just put on
    # the registry with the same content (the uncompressed variant's layer) in place of a gzip'd one.
    converting = [job for job in jobs if "--preserve-digests" not in job[4]]
    for job in converting:
        _push(*job)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: _push(*job), [job for job in jobs if job not in converting]))
    images = {name: describe(name, registry, repo) for name, (_, repo, _) in PLAN.items()}
    images[AUTH] = describe(AUTH, auth_registry, AUTH_REPOSITORY)
    return images


def _push(layout: Layout, tag: str, registry: Registry, repository: str, extra: tuple[str, ...]) -> None:
    creds = ("--dest-creds", f"{registry.username}:{registry.password}") if registry.auth else ()
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", *creds, *extra,
        f"oci:{layout.path}:{tag}", f"docker://{registry.host}/{repository}:{TAG}")


def describe(name: str, registry: Registry, repository: str, tag: str = TAG) -> PushedImage:
    """Read back what the registry serves, so digests are the served ones even after skopeo's conversions."""
    with httpx.Client(base_url=registry.url, auth=registry.auth, timeout=10) as client:
        top = _get_manifest(client, repository, tag)
        platforms = tuple(_platform(client, repository, entry) for entry in top.body.get("manifests", ()))
    if platforms:
        amd64 = next(p for p in platforms if p.platform == "linux/amd64")
        config, layers = amd64.config_digest, amd64.layer_digests
    else:
        config, layers = top.body["config"]["digest"], tuple(la["digest"] for la in top.body["layers"])
    return PushedImage(
        name, registry.host, repository, tag, top.digest, top.media_type, config, layers, top.size, platforms
    )


@dataclass(frozen=True)
class _Served:
    digest: str
    media_type: str
    size: int
    body: dict[str, Any]


def _get_manifest(client: httpx.Client, repository: str, ref: str) -> _Served:
    response = client.get(f"/v2/{repository}/manifests/{ref}", headers={"Accept": ACCEPT})
    response.raise_for_status()
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    served = response.headers.get("Docker-Content-Digest")
    if served != digest:
        raise AssertionError(f"registry says {served} for {repository}:{ref} but the bytes hash to {digest}")
    return _Served(digest, response.headers["Content-Type"], len(response.content), response.json())


def _platform(client: httpx.Client, repository: str, entry: dict[str, Any]) -> PlatformManifest:
    p = entry["platform"]
    name = "/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)
    manifest = _get_manifest(client, repository, entry["digest"]).body
    layers = tuple(la["digest"] for la in manifest["layers"])
    return PlatformManifest(name, entry["digest"], manifest["config"]["digest"], layers)
