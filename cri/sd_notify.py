"""systemd's readiness protocol: tell the service manager that the daemon serves, and that it is stopping.

With ``Type=notify`` systemd starts the units ordered after crishim (kubelet, an image preload) only once
the socket answers, instead of as soon as the process exists. Outside systemd ``NOTIFY_SOCKET`` is unset and
nothing is sent.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

__all__ = ["Notifier"]


@dataclass(frozen=True)
class Notifier:
    address: str  # "" when no service manager listens

    @classmethod
    def from_environment(cls) -> Notifier:
        """Take the manager's address out of the environment, as sd_notify(3)'s unset_environment does: a
        child given the daemon's environment would take the manager to be its own (runc then sets up a notify
        socket for every container)."""
        return cls(os.environ.pop("NOTIFY_SOCKET", ""))

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``READY=1``) to systemd; whether there was a manager to send it to."""
        if not self.address:
            return False
        # An abstract socket's name begins with a NUL byte, written "@" in the variable.
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
