"""Where the external tools are, and skips with a clear reason when one is missing or root is needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CRICTL_FALLBACK = "/usr/local/bin/crictl"


def binary(name: str) -> str:
    """Absolute path of a required tool, or skip the test that needs it."""
    path = shutil.which(name)
    if path is None and name == "crictl" and os.access(CRICTL_FALLBACK, os.X_OK):
        path = CRICTL_FALLBACK
    if path is None:
        pytest.skip(f"{name} is not installed (see script/setup/install-deps)")
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")


def require_file(path: Path, package: str) -> None:
    if not path.exists():
        pytest.skip(f"{path} is missing (Debian package {package})")
