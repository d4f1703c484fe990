"""``crishim image import FILE|-``: an OCI layout or docker-archive tarball into the daemon's store, unpacked.

The archive is streamed to the daemon (``cri.image_service.import_image``), which stores and unpacks it as
``ctr images import`` does; the flags are ctr's, plus ``--name``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import BinaryIO

from cri.commands import client
from cri.commands.helptext import add_command

HELP = "import images from an OCI layout or docker-archive tarball (docker save, skopeo copy)"
EXAMPLES = [
    "crishim image import build/demo.tar                 # names from the archive (docker save's RepoTags)",
    "docker save busybox:1.36 | crishim image import -   # from a pipe",
    "crishim image import --name demo/web:1 web.oci.tar  # an OCI layout holding one image, named here",
]
_CHUNK = 1 << 20


def register(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(group, "import", HELP, EXAMPLES)
    client.add_flags(parser)
    parser.add_argument("file", metavar="FILE|-", help="the tarball, or - for standard input")
    parser.add_argument("--name", default="", help="name the archive's one image so instead of its own names")
    parser.add_argument("--base-name", default="",
                        help="prefix of tag-only names; only names under it are kept (default: import-<date>)")
    parser.add_argument("--digests", action="store_true", help="also name each image <prefix>@<digest>")
    parser.add_argument("--skip-digest-for-named", action="store_true",
                        help="with --digests: no digest name for images the archive names")
    parser.add_argument("--index-name", default="", help="keep the archive's index as an image of this name")
    parser.add_argument("--all-platforms", action="store_true",
                        help="store the content of every platform, not only this host's")
    parser.add_argument("--platform", default="", help="store and unpack only this platform, e.g. linux/arm64")
    parser.add_argument("--no-unpack", action="store_true", help="store the images without unpacking them")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cri.image_service.import_image import METHOD, OPTIONS_KEY, encode_options
    from errdefs import InvalidArgument
    from store.importer import ImportOptions
    from store.platforms import Platform

    if args.skip_digest_for_named and not args.digests:
        raise InvalidArgument("--skip-digest-for-named must be specified with --digests option")
    options = ImportOptions(
        base_name=args.base_name, digests=args.digests, skip_digest_for_named=args.skip_digest_for_named,
        index_name=args.index_name, all_platforms=args.all_platforms,
        platform=Platform.parse(args.platform) if args.platform else None, unpack=not args.no_unpack,
        name=args.name)
    source = sys.stdin.buffer if args.file == "-" else _open(args.file)
    with source, client.connect(args) as c:
        call = c.channel.stream_unary(METHOD)
        answer = call(_chunks(source), metadata=(*c.metadata, (OPTIONS_KEY, encode_options(options))))
    for image in json.loads(answer):
        if image["unpacked"]:
            print(f"unpacking {image['name']} ({image['digest']})...done")
        else:
            print(f"{image['name']} ({image['digest']}): stored, not unpacked")
    return 0


def _open(path: str) -> BinaryIO:
    from errdefs import NotFound

    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk
