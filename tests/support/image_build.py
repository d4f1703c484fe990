"""Builds the test images into OCI layouts with umoci and busybox-static, plus a few hand-written variants.

Nothing here uses crishim's code, so a bug in crishim's parsers cannot agree with itself.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

from tests.support.layout import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Descriptor, Layout
from tests.support.procs import run
from tests.support.tools import binary, require_file

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "id", "true")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"

# Platforms of the multi-platform index, deliberately not starting with the host's (amd64) one so that
# "take the first entry" is caught.
PLATFORMS = (("linux", "arm64", None), ("linux", "amd64", None), ("linux", "arm", "v7"))
PLATFORM_LABEL = "org.crishim.test.platform"


def build_base_layout(workdir: Path) -> Layout:
    """Three layers (busybox; passwd/group/files; a deletion -> whiteout), tagged base/user1000/nobody."""
    umoci = binary("umoci")
    require_file(BUSYBOX, "busybox-static")
    layout, image, bundle = workdir / "layout", f"{workdir / 'layout'}:base", workdir / "bundle"
    run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", image)
    rootless = ("--rootless",) if os.geteuid() else ()  # unprivileged umoci cannot chown to uid 0
    run(umoci, "unpack", *rootless, "--image", image, bundle)
    rootfs = bundle / "rootfs"
    _add_busybox(rootfs)
    run(umoci, "repack", *rootless, "--refresh-bundle", "--image", image, bundle)
    _add_etc(rootfs)
    run(umoci, "repack", *rootless, "--refresh-bundle", "--image", image, bundle)
    # umoci writes this layer as the bare whiteout etc/.wh.doomed.txt, without an entry for etc/ itself:
    # legal (the parent comes from a lower layer) and a case layer appliers must handle.
    (rootfs / "etc" / "doomed.txt").unlink()
    run(umoci, "repack", *rootless, "--refresh-bundle", "--image", image, bundle)
    run(umoci, "config", "--image", image, "--os", "linux", "--architecture", "amd64",
        "--config.cmd", "/bin/sh", "--config.env", "PATH=/bin", "--config.workingdir", "/")
    run(umoci, "config", "--image", image, "--tag", "user1000", "--config.user", "1000")
    run(umoci, "config", "--image", image, "--tag", "nobody", "--config.user", "nobody")
    shutil.rmtree(bundle)
    return Layout(layout)


def _add_busybox(rootfs: Path) -> None:
    bindir = rootfs / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    for applet in APPLETS:
        (bindir / applet).symlink_to("busybox")


def _add_etc(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "hello.txt").write_text("hello from layer two\n")
    (etc / "doomed.txt").write_text("deleted again in layer three\n")


def add_uncompressed(layout: Layout, source_tag: str, tag: str) -> Descriptor:
    """Same image with plain-tar layers; skopeo cannot decompress towards a registry, so write it by hand."""
    manifest = layout.read_json(layout.resolve(source_tag).digest)
    for layer in manifest["layers"]:
        plain = layout.write(gzip.decompress(layout.read(layer["digest"])), OCI_LAYER_TAR)
        layer.update(plain.to_json())
    desc = layout.write_json(manifest, OCI_MANIFEST)
    layout.tag(tag, desc)
    return desc


def add_multiplatform(layout: Layout, source_tag: str, tag: str) -> Descriptor:
    """An OCI index over per-platform manifests sharing the layers, each with its own config."""
    base = layout.read_json(layout.resolve(source_tag).digest)
    base_config = layout.read_json(base["config"]["digest"])
    entries = []
    for os_name, arch, variant in PLATFORMS:
        config = _platform_config(base_config, os_name, arch, variant)
        config_desc = layout.write_json(config, OCI_CONFIG)
        manifest = {**base, "config": config_desc.to_json()}
        manifest_desc = layout.write_json(manifest, OCI_MANIFEST)
        platform = {"architecture": arch, "os": os_name} | ({"variant": variant} if variant else {})
        entries.append({**manifest_desc.to_json(), "platform": platform})
    desc = layout.write_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)
    layout.tag(tag, desc)
    return desc


def _platform_config(base: dict[str, Any], os_name: str, arch: str, variant: str | None) -> dict[str, Any]:
    name = "/".join(p for p in (os_name, arch, variant) if p)
    inner = dict(base.get("config") or {})
    inner["Labels"] = {PLATFORM_LABEL: name}
    config = {**base, "os": os_name, "architecture": arch, "config": inner}
    if variant:
        config["variant"] = variant
    return config


def zstd_layout(source: Layout, source_tag: str, workdir: Path) -> Layout:
    """Recompress into a separate layout (oci->oci honours --dest-compress-format; oci->registry may not)."""
    dest = workdir / "zstd-layout"
    run(binary("skopeo"), "--insecure-policy", "copy", "-q",
        "--dest-compress", "--dest-compress-format", "zstd",
        f"oci:{source.path}:{source_tag}", f"oci:{dest}:zstd")
    return Layout(dest)
