"""What the client subcommands share: the socket, the namespace, and errors from the daemon.

Like ctr, they speak containerd's API (and the CRI for pulls) on the daemon's
socket, and send the namespace in the ``containerd-namespace`` metadata key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from cri.errors import from_status

__all__ = ["ADDRESS_ENV", "DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "Client", "add_flags", "connect"]

DEFAULT_ADDRESS = "/run/crishim/crishim.sock"
DEFAULT_NAMESPACE = "k8s.io"
# As ctr's CONTAINERD_ADDRESS: the socket when no --address is given.
ADDRESS_ENV = "CRISHIM_ADDRESS"
NAMESPACE_KEY = "containerd-namespace"


def add_flags(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--address``/``-a`` and ``--namespace``/``-n``, accepted before or after the subcommand."""
    # Below the top level a flag left out must not overwrite what was given above it.
    default = argparse.SUPPRESS if not top_level else None
    parser.add_argument("-a", "--address", dest="client_address", metavar="SOCKET", default=default,
                        help=f"the daemon's socket (default: ${ADDRESS_ENV}, else {DEFAULT_ADDRESS})")
    parser.add_argument("-n", "--namespace", dest="client_namespace", metavar="NAME", default=default,
                        help=f"namespace (default: {DEFAULT_NAMESPACE})")


@dataclass(frozen=True, slots=True)
class Client:
    channel: grpc.Channel
    namespace: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_KEY, self.namespace),)


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Client]:
    """A channel to the daemon; a failed RPC surfaces as crishim's own error."""
    address = getattr(args, "client_address", None) or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    namespace = getattr(args, "client_namespace", None) or DEFAULT_NAMESPACE
    target = address if address.startswith("unix:") else f"unix://{address}"
    with grpc.insecure_channel(target) as channel:
        try:
            yield Client(channel, namespace)
        except grpc.RpcError as exc:
            raise from_status(exc.code(), exc.details() or "") from None
