"""``crishim content ls``: blobs of a namespace, with ctr's columns."""

from __future__ import annotations

import argparse
import time

from cri.commands import client
from cri.commands.helptext import add_command
from cri.commands.table import format_table, human_duration, human_size

HELP = "list content (blobs) in the content store"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "content", HELP, ["crishim content ls", "crishim content ls -q"])
    group = parser.add_subparsers(title="commands", metavar="COMMAND")
    ls = add_command(group, "ls", "list all blobs: digest, size, age and labels, as ctr content ls", [
        "crishim content ls",
        'crishim content ls \'labels."containerd.io/uncompressed"\'   # only layers, which carry that label'],
        aliases=["list"])
    client.add_flags(ls)
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the digests")
    ls.add_argument("filters", nargs="*", help="containerd filters, e.g. labels.\"containerd.io/gc.root\"")
    ls.set_defaults(run=run_ls)


def run_ls(args: argparse.Namespace) -> int:
    from cri.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc

    with client.connect(args) as c:
        stub = content_pb2_grpc.ContentStub(c.channel)
        infos = [info for response in stub.List(content_pb2.ListContentRequest(filters=args.filters),
                                                metadata=c.metadata) for info in response.info]
    if args.quiet:
        print("".join(f"{info.digest}\n" for info in infos), end="")
        return 0
    now = time.time()
    lines = ["DIGEST\tSIZE\tAGE\tLABELS"]
    for info in infos:
        age = human_duration(now - info.created_at.ToDatetime().timestamp()) if info.HasField("created_at") else "-"
        lines.append(f"{info.digest}\t{human_size(info.size)}\t{age}\t{labels_column(dict(info.labels))}")
    print(format_table(lines, 1, 8, 1, "\t"), end="")
    return 0


def labels_column(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
