"""The ``crishim`` program: ``serve`` runs the daemon, the other subcommands talk to it.

Each subcommand lives in its own module under ``cri.commands`` (see that
package's docstring); ``COMMANDS`` lists them in the order ``--help`` shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from cri.commands import check, client, content, image, info, plugin, run, serve, snapshot, version
from errdefs import CrishimError

__all__ = ["COMMANDS", "build_parser", "main"]


DESCRIPTION = """A Kubernetes container runtime (CRI). `crishim serve` runs the daemon that kubelet and crictl
talk to; the other commands are clients of it, with ctr's columns."""
EXAMPLES = """examples:
  crishim serve                          # the daemon, on /run/crishim/crishim.sock (as root)
  crishim image import build/demo.tar    # an image from a docker save or OCI archive tarball
  crishim run --rm localhost/crishim-demo:1 hello echo hello
  crishim info                           # what the daemon runs with, as JSON
  crishim COMMAND --help                 # each command's options and examples
"""


class Command(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


COMMANDS: tuple[Command, ...] = (serve, image, run, content, snapshot, plugin, info, check, version)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crishim", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    client.add_flags(parser, top_level=True)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = run(args)
    except CrishimError as exc:
        print(f"crishim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
