"""``crishim image pull|ls|rm``: images as ctr shows them.

``pull`` asks the daemon to pull through the CRI (so the image lands in
namespace k8s.io, unpacked, named by tag, repo digest and id) and shows each
descriptor while it runs, as ctr does: on a terminal, bars redrawn with the
bytes, speed and phase of each download (a layer unpacks as it downloads, and
is "unpacking" from its last byte until the pull ends); otherwise one plain line
per phase change. At the end, every descriptor of the image, done.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from cri.commands import client, image_import
from cri.commands.helptext import add_command
from cri.commands.table import format_table, human_bytes
from errdefs import InvalidArgument

HELP = "pull, import, list and remove images"
_INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
_BAR = 40


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "image", HELP, [
        "crishim image pull 127.0.0.1:5000/library/busybox:latest", "crishim image import build/demo.tar",
        "crishim image ls", "crishim image rm localhost/crishim-demo:1"], aliases=["images", "i"])
    group = parser.add_subparsers(title="commands", metavar="COMMAND")
    pull = add_command(group, "pull", "pull an image from a registry and unpack it, showing each download", [
        "crishim image pull 127.0.0.1:5000/library/busybox:latest",
        "crishim image pull -u alice:secret registry.example:5000/team/app:1.2"])
    client.add_flags(pull)
    pull.add_argument("-u", "--user", metavar="USER[:PASSWORD]", help="registry credentials")
    pull.add_argument("ref")
    pull.set_defaults(run=run_pull)
    ls = add_command(group, "ls", "list images with ctr's columns: name, type, digest, size, platforms", [
        "crishim image ls", "crishim image ls -q", "crishim image ls 'name~=busybox'"], aliases=["list"])
    client.add_flags(ls)
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the image names")
    ls.add_argument("filters", nargs="*", help="containerd filters, e.g. name~=busybox")
    ls.set_defaults(run=run_ls)
    rm = add_command(group, "rm", "remove images by name; what no image needs any more is collected", [
        "crishim image rm localhost/crishim-demo:1"], aliases=["remove", "delete", "del"])
    client.add_flags(rm)
    rm.add_argument("refs", nargs="+")
    rm.set_defaults(run=run_rm)
    image_import.register(group)


def run_ls(args: argparse.Namespace) -> int:
    from cri.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc

    with client.connect(args) as c:
        images = images_pb2_grpc.ImagesStub(c.channel).List(
            images_pb2.ListImagesRequest(filters=args.filters), metadata=c.metadata).images
        if args.quiet:
            print("".join(f"{image.name}\n" for image in images), end="")
            return 0
        read = _reader(c)
        lines = ["REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t"]
        for image in images:
            target = image.target
            size, platforms = _size_and_platforms(read, target.media_type, target.digest, target.size)
            labels = ",".join(f"{k}={v}" for k, v in sorted(image.labels.items())) or "-"
            lines.append(f"{image.name}\t{target.media_type}\t{target.digest}\t{size}\t{platforms}\t{labels}\t")
    print(format_table(lines, 1, 8, 1), end="")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from cri.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc

    with client.connect(args) as c:
        stub = images_pb2_grpc.ImagesStub(c.channel)
        for ref in args.refs:
            stub.Delete(images_pb2.DeleteImageRequest(name=ref, sync=True), metadata=c.metadata)
            print(ref)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from cri.api.runtime.v1 import api_pb2, api_pb2_grpc

    if (getattr(args, "client_namespace", None) or client.DEFAULT_NAMESPACE) != client.DEFAULT_NAMESPACE:
        raise InvalidArgument(f"crishim pulls through the CRI, into namespace {client.DEFAULT_NAMESPACE} only")
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=args.ref))
    if args.user:
        username, _, password = args.user.partition(":")
        request.auth.username, request.auth.password = username, password
    started = time.monotonic()
    with client.connect(args) as c:
        progress = _Progress(c, args.ref)
        result: dict[str, Any] = {}
        worker = threading.Thread(target=_call, args=(api_pb2_grpc.ImageServiceStub(c.channel).PullImage,
                                                      request, result))
        worker.start()
        while worker.is_alive():
            progress.show_live()
            worker.join(0.1)
        if "error" in result:
            raise result["error"]
        progress.show_done(time.monotonic() - started)
    return 0


def _call(rpc: Callable[[Any], Any], request: Any, result: dict[str, Any]) -> None:
    try:
        result["response"] = rpc(request)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        result["error"] = exc


class _Progress:
    """Per-descriptor lines: ingests while they download, then every descriptor of the image, done."""

    def __init__(self, c: client.Client, ref: str) -> None:
        self._client = c
        self._ref = ref
        self._drawn = 0
        self._live = sys.stdout.isatty()
        self._totals: dict[str, int] = {}  # every download seen so far, by ref
        self._downloading: set[str] = set()  # plain output: downloads announced and not ended yet

    def show_live(self) -> None:
        from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

        stub = content_pb2_grpc.ContentStub(self._client.channel)
        statuses = stub.ListStatuses(content_pb2.ListStatusesRequest(), metadata=self._client.metadata).statuses
        active = {s.ref: s for s in statuses}
        if not self._live:
            self._print_changes(active)
            return
        self._totals.update({ref: s.total for ref, s in active.items()})
        rows = [(self._ref, "resolving", 0, 0, "")]
        for ref, total in self._totals.items():
            status = active.get(ref)
            if status is None:
                rows.append((ref, _after_download(ref), total, total, human_bytes(total)))
            else:
                rows.append((ref, "downloading", status.offset, status.total, _transfer(status)))
        self._draw(rows)

    def _print_changes(self, active: dict[str, Any]) -> None:
        """Plain output: a line when a download starts and one when its last byte is in."""
        for ref, status in active.items():
            if ref not in self._downloading:
                print(f"{ref}: downloading {human_bytes(status.total)}", flush=True)
        for ref in sorted(self._downloading - set(active)):
            print(f"{ref}: {_after_download(ref)}", flush=True)
        self._downloading = set(active)

    def show_done(self, elapsed: float) -> None:
        from cri.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc

        image = images_pb2_grpc.ImagesStub(self._client.channel).Get(
            images_pb2.GetImageRequest(name=_normalized(self._ref)), metadata=self._client.metadata).image
        descriptors = _walk(_reader(self._client), image.target.media_type, image.target.digest, image.target.size)
        rows = [(self._ref, "resolved", 1, 1, "")]
        rows += [(f"{kind}-{digest}", "done", 1, 1, human_bytes(size)) for kind, digest, size in descriptors]
        self._draw(rows)
        total = sum(size for _, _, size in descriptors)
        print(f"elapsed: {elapsed:.1f} s\ttotal: {human_bytes(total)} ({human_bytes(total / max(elapsed, 1e-9))}/s)")
        print(f"unpacking linux/amd64 {image.target.digest}...")
        print(f"done: {elapsed:.3f}s")

    def _draw(self, rows: list[tuple[str, str, int, int, str]]) -> None:
        if self._drawn:
            sys.stdout.write(f"\x1b[{self._drawn}A\x1b[J")
        lines = [f"{ref}:\t{status}\t{_bar(done, total)}\t{detail}" for ref, status, done, total, detail in rows]
        text = format_table(lines, 1, 8, 1)
        sys.stdout.write(text)
        sys.stdout.flush()
        self._drawn = len(lines) if self._live else 0


def _after_download(ref: str) -> str:
    """A layer's last byte is in: it is unpacked and committed, in chain order, before the pull ends."""
    return "unpacking" if ref.startswith("layer-") else "done"


def _transfer(status: Any) -> str:
    """``1.2 MiB/7.0 MiB (3.1 MiB/s)``: bytes so far of the total, and the rate since the download started."""
    elapsed = max(time.time() - status.started_at.ToSeconds(), 1e-3) if status.HasField("started_at") else 0.0
    rate = f" ({human_bytes(status.offset / elapsed)}/s)" if elapsed else ""
    return f"{human_bytes(status.offset)}/{human_bytes(status.total)}{rate}"


def _bar(done: int, total: int) -> str:
    filled = _BAR if total and done >= total else (done * _BAR // total if total else 0)
    return "|" + "+" * filled + " " * (_BAR - filled) + "|"


def _normalized(ref: str) -> str:
    from store.reference import Reference

    return str(Reference.parse(ref))


def _reader(c: client.Client) -> Callable[[str], bytes]:
    from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

    stub = content_pb2_grpc.ContentStub(c.channel)

    def read(digest: str) -> bytes:
        chunks = stub.Read(content_pb2.ReadContentRequest(digest=digest), metadata=c.metadata)
        return b"".join(chunk.data for chunk in chunks)

    return read


def _walk(read: Callable[[str], bytes], media_type: str, digest: str, size: int) -> list[tuple[str, str, int]]:
    """(kind, digest, size) of the index, the local manifest, its config and layers, as ctr lists them."""
    found: list[tuple[str, str, int]] = []
    if media_type in _INDEX_TYPES:
        found.append(("index", digest, size))
        manifest = _local_manifest(read, json.loads(read(digest)))
        if manifest is None:
            return found
        media_type, digest, size = manifest["mediaType"], manifest["digest"], manifest["size"]
    found.append(("manifest", digest, size))
    doc = json.loads(read(digest))
    found.append(("config", doc["config"]["digest"], doc["config"]["size"]))
    found += [("layer", layer["digest"], layer["size"]) for layer in doc.get("layers", [])]
    return found


def _local_manifest(read: Callable[[str], bytes], index: dict[str, Any]) -> dict[str, Any] | None:
    from errdefs import NotFound
    from store.platforms import Platform, default_platform, ranked

    candidates = ranked(default_platform(), index.get("manifests", []),
                        lambda desc: Platform.from_spec(desc["platform"]) if "platform" in desc else None)
    for desc in candidates:
        try:
            read(desc["digest"])
        except NotFound:
            continue
        return dict(desc)
    return None


def _size_and_platforms(read: Callable[[str], bytes], media_type: str, digest: str, size: int) -> tuple[str, str]:
    """ctr's SIZE (this platform's descriptors) and PLATFORMS (every platform the image offers)."""
    from errdefs import CrishimError

    try:
        total = human_bytes(sum(s for _, _, s in _walk(read, media_type, digest, size)))
    except (CrishimError, KeyError, ValueError):
        total = "-"
    try:
        platforms = ",".join(sorted(_platforms(read, media_type, digest)))
    except (CrishimError, KeyError, ValueError):
        platforms = "-"
    return total, platforms


def _platforms(read: Callable[[str], bytes], media_type: str, digest: str) -> list[str]:
    from store.platforms import Platform

    if media_type in _INDEX_TYPES:
        found = []
        for desc in json.loads(read(digest)).get("manifests", []):
            spec = desc.get("platform")
            if spec:
                if "unknown" not in (spec.get("os"), spec.get("architecture")):
                    found.append(str(Platform(spec.get("os", ""), spec.get("architecture", ""),
                                              spec.get("variant", ""))))
            else:
                found += _platforms(read, desc["mediaType"], desc["digest"])
        return found
    config = json.loads(read(json.loads(read(digest))["config"]["digest"]))
    return [str(Platform.from_spec({"os": config.get("os"), "architecture": config.get("architecture")}))]
