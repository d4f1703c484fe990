"""``crishim snapshot ls``: a snapshotter's snapshots, with ctr's columns."""

from __future__ import annotations

import argparse

from cri.commands import client
from cri.commands.helptext import add_command
from cri.commands.table import format_table

HELP = "list the snapshots a snapshotter holds (image layers and container root filesystems)"
KINDS = {0: "Unknown", 1: "View", 2: "Active", 3: "Committed"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "snapshot", HELP, ["crishim snapshot ls"], aliases=["snapshots"])
    group = parser.add_subparsers(title="commands", metavar="COMMAND")
    ls = add_command(group, "ls", "list a snapshotter's snapshots: layers by chain ID, containers by id", [
        "crishim snapshot ls", "crishim snapshot ls kind==active   # the containers' root filesystems"],
        aliases=["list"])
    client.add_flags(ls)
    ls.add_argument("--snapshotter", default="overlayfs", help="snapshotter name (default: overlayfs)")
    ls.add_argument("filters", nargs="*", help="containerd filters, e.g. kind==committed")
    ls.set_defaults(run=run_ls)


def run_ls(args: argparse.Namespace) -> int:
    from cri.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc

    request = snapshots_pb2.ListSnapshotsRequest(snapshotter=args.snapshotter, filters=args.filters)
    with client.connect(args) as c:
        stub = snapshots_pb2_grpc.SnapshotsStub(c.channel)
        infos = [info for response in stub.List(request, metadata=c.metadata) for info in response.info]
    lines = ["KEY\tPARENT\tKIND\t"]
    lines += [f"{info.name}\t{info.parent}\t{KINDS.get(info.kind, 'Unknown')}\t" for info in infos]
    print(format_table(lines, 1, 8, 1), end="")
    return 0
