"""The images critest pulls, rebuilt here from Debian parts and pushed to the test registry under the same
repository paths, so hosts.toml mirrors for registry.k8s.io, k8s.gcr.io and gcr.io serve them.

What each upstream image must do for critest's specs, and how it is made:

- ``e2e-test-images/busybox:1.29-2`` (the default container image): busybox applets, pgrep, ipcs, the usual
  /etc/passwd (root, www-data, nobody...). One layer, shared by every image below built on it.
- ``k8s-staging-cri-tools/test-image-user-*``: the busybox layer with ``User`` set (1002, www-data,
  1003:1004, www-data:1004); ``test-image-predefined-group``: user 1000 in group 50000 in /etc/group.
- ``k8s-staging-cri-tools/test-image-{latest,1,2,3,tag,tags}``: the busybox layer plus a marker file, one
  image per marker (the three ``test-image-tags`` tags are one image, as upstream).
- ``e2e-test-images/httpd:2.4.39-4``: busybox httpd on port 80, which says "httpd" in its log first.
- ``e2e-test-images/nonewprivs:1.3``: a setuid-root ``nnp`` printing ``Effective uid: N``.
- ``pause:3.9``: catatonit in pause mode (containerd runs it as the sandbox; the image specs pull it).
- ``e2e-test-images/nginx:1.14-2`` and ``k8s-staging-cri-tools/hostnet-nginx-amd64``: the seed image (Debian
  nginx) with its site replaced by one on port 80, or 12003 for the host-network one.

``k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...`` is pinned by digest upstream; no rebuild can
produce those bytes, so its spec cannot pass here (tests/support/critest.py skips it, saying so).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.support.critest_parts import Parts
from tests.support.layout import OCI_CONFIG, OCI_MANIFEST, Layout, canonical_json, sha256_digest
from tests.support.registry import Registry
from tests.support.registry_push import descriptor, push_blob, push_manifest
from tests.support.tarlayers import Entry, build_layer, d, f, hardlink, layer, whiteout

# The registries critest names, all mirrored to the test registry (docker.io too, so a stray short name
# never leaves the host).
MIRRORED = ("registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io")
E2E = "e2e-test-images"
STAGING = "k8s-staging-cri-tools"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREATED = "2021-01-01T00:00:00Z"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
floppy:x:11:
news:x:13:
uucp:x:14:
www-data:x:33:
users:x:100:
nogroup:x:65534:
"""


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    diff_id: str = ""

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)


@dataclass(frozen=True)
class Image:
    repository: str
    tags: tuple[str, ...]
    layers: tuple[Blob, ...]
    config: dict[str, Any] = field(default_factory=dict)  # the config's "config" object

    def config_blob(self) -> Blob:
        doc = {
            "created": CREATED, "architecture": "amd64", "os": "linux",
            "config": {"Env": [PATH_ENV], **self.config},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in self.layers]},
            "history": [{"created": CREATED, "created_by": f"{self.repository} layer {i}"}
                        for i in range(len(self.layers))],
        }
        return Blob(canonical_json(doc), OCI_CONFIG)

    def manifest(self) -> dict[str, Any]:
        config = self.config_blob()
        return {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config.digest, len(config.data)),
            "layers": [descriptor(b.media_type, b.digest, len(b.data)) for b in self.layers],
        }


def _blob(entries: Iterable[Entry]) -> Blob:
    built = build_layer(layer(*entries))
    return Blob(built.blob, built.media_type, built.diff_id)


def busybox_layer(parts: Parts) -> Blob:
    dirs = ["bin", "dev", "etc", "home", "lib", "lib/x86_64-linux-gnu", "lib64", "proc", "run", "sys", "usr",
            "usr/bin", "usr/local", "usr/local/bin", "var", "var/www", "var/spool", "var/spool/mail"]
    entries = [d(name) for name in dirs] + [d("root", 0o700), d("tmp", 0o1777), d("var/tmp", 0o1777)]
    # Hard links, as upstream busybox images have: runc masks a path by mounting /dev/null on it, and on a
    # symbolic link that would mask busybox itself (critest's MaskedPaths spec masks /bin/ls).
    entries.append(f("bin/busybox", parts.busybox, 0o755))
    entries += [hardlink(f"bin/{applet}", "bin/busybox", 0o755) for applet in parts.applets]
    entries += [f(f"bin/{name}", data, 0o755) for name, data in sorted(parts.tools.items())]
    entries += [f(path.lstrip("/"), data, 0o755) for path, data in sorted(parts.libraries.items())]
    entries += [f("etc/passwd", PASSWD), f("etc/group", GROUP), f("etc/hostname", ""), f("etc/hosts", ""),
                f("etc/resolv.conf", "")]
    return _blob(entries)


def _marker(name: str) -> Blob:
    return _blob([f(name, "")])


def busybox_images(parts: Parts) -> list[Image]:
    base = (busybox_layer(parts),)
    users = {"test-image-user-uid": "1002", "test-image-user-username": "www-data",
             "test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004"}
    images = [Image(f"{E2E}/busybox", ("1.29-2",), base, {"Cmd": ["sh"]})]
    images += [Image(f"{STAGING}/{name}", ("latest",), base, {"Cmd": ["sh"], "User": user})
               for name, user in users.items()]
    images += [Image(f"{STAGING}/{name}", ("latest",), (*base, _marker(name)), {"Cmd": ["sh"]})
               for name in ("test-image-latest", "test-image-1", "test-image-2", "test-image-3")]
    images += [Image(f"{STAGING}/test-image-tag", (tag,), (*base, _marker(tag)), {"Cmd": ["sh"]})
               for tag in ("test", "all")]
    images.append(Image(f"{STAGING}/test-image-tags", ("1", "2", "3"), (*base, _marker("same-image")),
                        {"Cmd": ["sh"]}))
    images.append(Image(f"{STAGING}/test-image-predefined-group", ("latest",), (*base, _predefined_group()),
                        {"Cmd": ["sh"], "User": "1000"}))
    images.append(Image(f"{E2E}/httpd", ("2.4.39-4",), (*base, _httpd()), {
        "Cmd": ["sh", "-c", "echo 'httpd: serving /usr/local/apache2/htdocs on port 80'; "
                            "exec httpd -f -p 80 -h /usr/local/apache2/htdocs"],
        "ExposedPorts": {"80/tcp": {}}}))
    images.append(Image(f"{E2E}/nonewprivs", ("1.3",), (*base, _nnp(parts)),
                        {"Entrypoint": ["/usr/local/bin/nnp"]}))
    return images


def _predefined_group() -> Blob:
    passwd = PASSWD + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"
    group = GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
    return _blob([d("etc"), f("etc/passwd", passwd), f("etc/group", group), d("home"),
                  d("home/default-user", uid=1000, gid=1000)])


def _httpd() -> Blob:
    html = "<html><body><h1>It works!</h1></body></html>\n"
    return _blob([d("usr"), d("usr/local"), d("usr/local/apache2"), d("usr/local/apache2/htdocs"),
                  f("usr/local/apache2/htdocs/index.html", html)])


def _nnp(parts: Parts) -> Blob:
    return _blob([d("usr"), d("usr/local"), d("usr/local/bin"), f("usr/local/bin/nnp", parts.nnp, 0o4755)])


def pause_image(parts: Parts) -> Image:
    pause = _blob([f("pause", parts.catatonit, 0o755)])
    return Image("pause", ("3.9",), (pause,), {"Entrypoint": ["/pause", "-P"], "User": "65535:65535"})


def nginx_images(seed: Layout, seed_tag: str, parts: Parts) -> list[Image]:
    """The seed's nginx with its site on critest's ports; its own layers, then one more."""
    manifest = seed.read_json(seed.resolve(seed_tag).digest)
    config = seed.read_json(manifest["config"]["digest"])
    layers = tuple(Blob(seed.read(la["digest"]), la["mediaType"], diff)
                   for la, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True))
    inner = {k: v for k, v in config["config"].items() if k in ("Cmd", "Entrypoint", "StopSignal", "Env")}
    return [
        Image(f"{E2E}/nginx", ("1.14-2",), (*layers, _nginx_site(80, parts)), inner | {"ExposedPorts": {"80/tcp": {}}}),
        Image(f"{STAGING}/hostnet-nginx-amd64", ("latest",), (*layers, _nginx_site(12003, parts)),
              inner | {"ExposedPorts": {"12003/tcp": {}}}),
    ]


def _nginx_site(port: int, parts: Parts) -> Blob:
    """The site on port, and busybox's grep before Debian's in PATH: critest greps /proc/1/cmdline, which holds
    NUL bytes, and expects nothing on stderr, where GNU grep says "binary file matches"."""
    site = f"server {{\n    listen {port} default_server;\n    root /var/www/html;\n    index index.html;\n}}\n"
    return _blob([d("etc"), d("etc/nginx"), d("etc/nginx/conf.d"), whiteout("etc/nginx/conf.d/crishim.conf"),
                  f("etc/nginx/conf.d/critest.conf", site), d("usr"), d("usr/local"), d("usr/local/bin"),
                  f("usr/local/bin/busybox", parts.busybox, 0o755),
                  hardlink("usr/local/bin/grep", "usr/local/bin/busybox", 0o755)])


def push_images(registry: Registry, images: list[Image], say: Callable[[str], None] = print) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda image: _push(registry, image), images))
    say(f"critest images: {len(images)} pushed to {registry.host}: "
        + ", ".join(f"{i.repository}:{','.join(i.tags)}" for i in images))


def _push(registry: Registry, image: Image) -> None:
    for blob in (*image.layers, image.config_blob()):
        push_blob(registry, image.repository, blob.data)
    for tag in image.tags:
        push_manifest(registry, image.repository, tag, OCI_MANIFEST, json.loads(canonical_json(image.manifest())))
