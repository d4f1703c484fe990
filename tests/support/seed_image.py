"""The seed walkthrough's image: Debian bookworm (debootstrap --variant=minbase) with nginx, plus a few small
layers (a config file, an index.html, deletions), packed layer by layer with umoci into an OCI layout.

Building takes minutes and needs the Debian mirror, so the finished layout is kept under
/var/cache/crishim-tests/, in a folder named after a hash of this module (the recipe): any change here builds
a new one. It is built in a temporary folder beside it and renamed into place when complete, under a lock so
two sessions never build it at once. Without a cached copy and without the mirror the fixture skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.images import PushedImage, describe
from tests.support.layout import Layout
from tests.support.mounts import unmount_under
from tests.support.procs import run
from tests.support.registry import Registry
from tests.support.report import say
from tests.support.tarlayers import chain_ids
from tests.support.tools import binary, require_root

CACHE_ROOT = Path("/var/cache/crishim-tests")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("nginx",)
TAG = "bookworm-nginx"
REPOSITORY = "test/debian-nginx"
PUSH_TAG = "stable"
PRUNE_AFTER_SECONDS = 24 * 3600
CHROOT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C",
              "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

NGINX_CONF = """server {
    listen 8080 default_server;
    root /var/www/html;
    index index.html;
    location / {
        try_files $uri $uri/ =404;
    }
}
"""
INDEX_HTML = "<!doctype html>\n<title>crishim</title>\n<h1>nginx, served from an overlayfs snapshot</h1>\n"
DELETED = ("etc/nginx/sites-enabled/default", "var/www/html/index.nginx-debian.html", "usr/share/doc/nginx")


@dataclass(frozen=True)
class SeedImage:
    pushed: PushedImage
    diff_ids: tuple[str, ...]
    layout: Path
    cached: bool
    build_seconds: float  # how long the build took when it ran (read back from the cache for a cached copy)

    @property
    def ref(self) -> str:
        return self.pushed.ref

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)


def recipe_key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cache_dir() -> Path:
    return CACHE_ROOT / f"debian-nginx-{recipe_key()}"


def provide_seed_image(registry: Registry, config: pytest.Config) -> SeedImage:
    """Build (or take from the cache) and push the image; skips if it must be built and the mirror is down."""
    require_root("building the Debian image (debootstrap, chroot)")
    final = cache_dir()
    started = time.monotonic()
    cached = _complete(final)
    if cached:
        os.utime(final)  # in use: keeps it from being pruned as an old recipe's
    else:
        unreachable = mirror_unreachable()
        if unreachable:
            say(config, f"seed image: SKIPPED: {unreachable}")
            pytest.skip(unreachable)
        with _build_lock():
            cached = _complete(final)
            if not cached:
                say(config, f"seed image: building Debian {SUITE} + nginx into {final} (takes minutes)")
                _build(final, lambda line: say(config, line))
    info = json.loads((final / "build.json").read_text())
    layout = Layout(final / "layout")
    pushed_at = time.monotonic()
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
        f"oci:{layout.path}:{TAG}", f"docker://{registry.host}/{REPOSITORY}:{PUSH_TAG}", timeout=600)
    pushed = describe("seed", registry, REPOSITORY, PUSH_TAG)
    if cached:
        say(config, f"seed image: cached copy {final} (built in {info['seconds']:.1f} s on {info['built_at']}), "
                    f"found in {pushed_at - started:.1f} s, pushed in {time.monotonic() - pushed_at:.1f} s")
    else:
        say(config, f"seed image: built in {info['seconds']:.1f} s (steps: {info['steps']}), "
                    f"pushed in {time.monotonic() - pushed_at:.1f} s")
    return SeedImage(pushed, _diff_ids(layout), final / "layout", cached, float(info["seconds"]))


def mirror_unreachable() -> str | None:
    url = f"{MIRROR}/dists/{SUITE}/InRelease"
    try:
        httpx.head(url, timeout=10, follow_redirects=True).raise_for_status()
    except httpx.HTTPError as error:
        return f"the Debian mirror is unreachable ({url}: {error}), so the seed image cannot be built"
    return None


def _complete(final: Path) -> bool:
    return (final / "layout" / "index.json").is_file() and (final / "build.json").is_file()


@contextmanager
def _build_lock() -> Iterator[None]:
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with (CACHE_ROOT / ".debian-nginx.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(final: Path, say: Callable[[str], None]) -> None:
    # Holding the lock: any temporary folder still here is left over from an interrupted build.
    for stale in CACHE_ROOT.glob(".build-*"):
        unmount_under(stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE_ROOT))
    try:
        steps = _build_layout(tmp, say)
        seconds = sum(steps.values())
        built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (tmp / "build.json").write_text(json.dumps({
            "seconds": seconds, "steps": {k: round(v, 1) for k, v in steps.items()}, "built_at": built_at,
            "suite": SUITE, "mirror": MIRROR, "packages": list(PACKAGES),
        }, indent=2))
        os.rename(tmp, final)
    except BaseException:
        unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune_old_recipes(final)


def _prune_old_recipes(keep: Path) -> None:
    """Copies built from earlier recipes, untouched for a day (another checkout may still use a recent one)."""
    for old in CACHE_ROOT.glob("debian-nginx-*"):
        if old != keep and time.time() - old.stat().st_mtime > PRUNE_AFTER_SECONDS:
            shutil.rmtree(old, ignore_errors=True)


def _build_layout(tmp: Path, say: Callable[[str], None]) -> dict[str, float]:
    umoci = binary("umoci")
    debootstrap = binary("debootstrap")
    layout, bundle = tmp / "layout", tmp / "bundle"
    image = f"{layout}:{TAG}"
    rootfs = bundle / "rootfs"
    steps: dict[str, float] = {}

    @contextmanager
    def step(name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        steps[name] = time.monotonic() - started
        say(f"seed image: {name}: {steps[name]:.1f} s")

    def repack(created_by: str) -> None:
        run(umoci, "repack", "--refresh-bundle", "--image", image, "--history.created_by", created_by, bundle,
            timeout=900)

    try:
        with step("umoci init"):
            run(umoci, "init", "--layout", layout)
            run(umoci, "new", "--image", image)
            run(umoci, "unpack", "--image", image, bundle)
        with step("debootstrap"):
            run(debootstrap, "--variant=minbase", SUITE, rootfs, MIRROR, timeout=1800)
            unmount_under(rootfs)
            _remove_host_copies(rootfs)
        with step("layer 1 (base)"):
            repack(f"debootstrap --variant=minbase {SUITE} / {MIRROR}")
        with step("apt-get install nginx"), _chroot_with_network(rootfs):
            _chroot(rootfs, "apt-get", "-q", "update")
            _chroot(rootfs, "apt-get", "-q", "install", "-y", "--no-install-recommends", *PACKAGES)
            _chroot(rootfs, "apt-get", "clean")
        with step("layer 2 (nginx)"):
            for lists in (rootfs / "var/lib/apt/lists").glob("*"):
                if lists.is_file():
                    lists.unlink()
            repack(f"apt-get install --no-install-recommends {' '.join(PACKAGES)}")
        with step("layers 3-5 (config, index.html, deletions)"):
            (rootfs / "etc/nginx/conf.d/crishim.conf").write_text(NGINX_CONF)
            repack("COPY crishim.conf /etc/nginx/conf.d/")
            (rootfs / "var/www/html/index.html").write_text(INDEX_HTML)
            repack("COPY index.html /var/www/html/")
            for relative in DELETED:
                path = rootfs / relative
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            repack("RUN rm -r " + " ".join("/" + p for p in DELETED))
        with step("umoci config, gc"):
            run(umoci, "config", "--image", image, "--os", "linux", "--architecture", "amd64",
                "--config.cmd", "nginx", "--config.cmd", "-g", "--config.cmd", "daemon off;",
                "--config.exposedports", "8080/tcp", "--config.stopsignal", "SIGQUIT",
                "--config.env", "PATH=" + CHROOT_ENV["PATH"],
                "--config.label", "org.opencontainers.image.title=crishim seed nginx")
            run(umoci, "gc", "--layout", layout)
    finally:
        unmount_under(bundle)
        shutil.rmtree(bundle, ignore_errors=True)
    return steps


def _remove_host_copies(rootfs: Path) -> None:
    """debootstrap copies the build host's resolv.conf and hostname; an image carries neither."""
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)


@contextmanager
def _chroot_with_network(rootfs: Path) -> Iterator[None]:
    """The host's resolv.conf for name lookups, and a policy-rc.d that keeps package scripts from starting
    services; both gone again afterwards."""
    resolv, policy = rootfs / "etc/resolv.conf", rootfs / "usr/sbin/policy-rc.d"
    shutil.copyfile("/etc/resolv.conf", resolv)
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        resolv.unlink(missing_ok=True)
        policy.unlink(missing_ok=True)
        unmount_under(rootfs)


def _chroot(rootfs: Path, *command: str) -> None:
    run("chroot", rootfs, *command, env=CHROOT_ENV, timeout=1800)


def _diff_ids(layout: Layout) -> tuple[str, ...]:
    manifest = layout.read_json(layout.resolve(TAG).digest)
    config = layout.read_json(manifest["config"]["digest"])
    return tuple(config["rootfs"]["diff_ids"])
