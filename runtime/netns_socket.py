"""Sockets that belong to a pod's network namespace, for port-forwarding into the pod.

A socket belongs to the network namespace its creator was in when it was made, and stays there. setns()
changes only the calling thread, so each socket is made in a short-lived thread of its own that enters the
pod's namespace and never returns to a pool: no other work can ever run in the wrong namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path

from errdefs import FailedPrecondition, NotFound

__all__ = ["sockets_in"]

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sockets_in(netns: Path | None, families: tuple[socket.AddressFamily, ...]) -> list[socket.socket]:
    """Non-blocking TCP sockets, one per family, made in ``netns`` (the host's when None)."""
    if netns is None:
        return [_nonblocking(socket.socket(family, socket.SOCK_STREAM)) for family in families]
    made: list[socket.socket] = []
    failure: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            failure.append(NotFound(f"network namespace {netns} does not exist"))
            return
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                failure.append(FailedPrecondition(f"cannot enter network namespace {netns}: {os.strerror(err)}"))
                return
            made.extend(_nonblocking(socket.socket(family, socket.SOCK_STREAM)) for family in families)
        except OSError as exc:
            failure.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_make, name="netns-socket", daemon=True)
    thread.start()
    thread.join()
    if failure:
        for sock in made:
            sock.close()
        raise failure[0]
    return made


def _nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    return sock
