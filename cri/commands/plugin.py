"""``crishim plugin ls``: the daemon's plugins and whether each works on this host, as ctr shows them."""

from __future__ import annotations

import argparse

from cri.commands import client
from cri.commands.helptext import add_command
from cri.commands.table import format_table

HELP = "list the daemon's plugins and whether each works on this host"
# How ctr tells a skipped plugin from a failed one.
SKIP_MARKER = "skip plugin"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "plugin", HELP, ["crishim plugin ls", "crishim plugin ls -d"],
                         aliases=["plugins"])
    group = parser.add_subparsers(title="commands", metavar="COMMAND")
    ls = add_command(group, "ls", "list plugins, with ok, skip or error as probed on this host", [
        "crishim plugin ls", "crishim plugin ls -d      # and why each skipped one is skipped",
        "crishim plugin ls type==io.containerd.snapshotter.v1"], aliases=["list"])
    client.add_flags(ls)
    ls.add_argument("-d", "--detailed", action="store_true", help="also print why a plugin is skipped or failed")
    ls.add_argument("filters", nargs="*", help="containerd filters, e.g. type==io.containerd.snapshotter.v1")
    ls.set_defaults(run=run_ls)


def run_ls(args: argparse.Namespace) -> int:
    from cri.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc

    with client.connect(args) as c:
        stub = introspection_pb2_grpc.IntrospectionStub(c.channel)
        plugins = stub.Plugins(introspection_pb2.PluginsRequest(filters=args.filters), metadata=c.metadata).plugins
    lines = ["TYPE\tID\tPLATFORMS\tSTATUS\t"]
    for p in plugins:
        platforms = ",".join("/".join(x for x in (q.os, q.architecture, q.variant) if x) for q in p.platforms) or "-"
        line = f"{p.type}\t{p.id}\t{platforms}\t{status(p)}"
        if args.detailed and p.HasField("init_err"):
            line += f" ({p.init_err.message})"
        lines.append(line + "\t")
    print(format_table(lines, 4, 8, 4), end="")
    return 0


def status(plugin: object) -> str:
    if not plugin.HasField("init_err"):  # type: ignore[attr-defined]
        return "ok"
    return "skip" if SKIP_MARKER in plugin.init_err.message else "error"  # type: ignore[attr-defined]
