"""crishim's gRPC front: daemon wiring, CRI services, command line.

``python -m cri serve`` (or the ``crishim`` console script) runs the daemon.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]


def _package_version() -> str:
    try:
        return metadata.version("crishim")
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "0.0.0+unknown"


__version__ = _package_version()
