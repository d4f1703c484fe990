"""``crishim version``: this program's version and the daemon's, as ctr prints them."""

from __future__ import annotations

import argparse

from cri.commands import client
from cri.commands.helptext import add_command

HELP = "print the client and daemon versions"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(subparsers, "version", HELP, ["crishim version", "crishim -a /tmp/test.sock version"])
    client.add_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from google.protobuf import empty_pb2

    import cri
    from cri.api.containerd.services.version.v1 import version_pb2_grpc
    from cri.containerd.version import revision

    print(f"Client:\n  Version:  {cri.__version__}\n  Revision: {revision()}\n")
    with client.connect(args) as c:
        answer = version_pb2_grpc.VersionStub(c.channel).Version(empty_pb2.Empty(), metadata=c.metadata)
    print(f"Server:\n  Version:  {answer.version}\n  Revision: {answer.revision}")
    return 0
