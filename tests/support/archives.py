"""Image archives written by skopeo from the test registry, as `docker save` writes them: independent of
crishim's code, for tests that import them."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import run
from tests.support.tools import binary


def docker_archive(ref: str, path: Path, tagged: str) -> Path:
    """``ref`` (in a plain-HTTP registry) as a docker-archive tarball at ``path`` naming it ``tagged``."""
    run(binary("skopeo"), "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
        f"docker-archive:{path}:{tagged}", timeout=600)
    return path
