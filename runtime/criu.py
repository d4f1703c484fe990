"""Whether CRIU can checkpoint processes on this host: ``criu check``, run once and remembered.

Container checkpoints (CheckpointContainer) need CRIU. Where it cannot run, the request is refused with
CRIU's own words for why; this build does not write checkpoint archives yet, so where it can run the
request is Unimplemented.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

from errdefs import FailedPrecondition, Unimplemented

__all__ = ["require_checkpoint"]

_TIMEOUT = 30.0


def require_checkpoint() -> None:
    """Raise why a container cannot be checkpointed here."""
    problem = _criu_problem()
    if problem:
        raise FailedPrecondition(f"container checkpoints need CRIU, which cannot run here: {problem}")
    raise Unimplemented("container checkpoints are not implemented yet (CRIU itself works here)")


@functools.cache
def _criu_problem() -> str:
    binary = shutil.which("criu")
    if binary is None:
        return "criu is not installed (Debian package criu)"
    try:
        result = subprocess.run([binary, "check"], capture_output=True, text=True, timeout=_TIMEOUT,
                                stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"criu check: {exc}"
    if result.returncode == 0:
        return ""
    errors = [line for line in (result.stderr + result.stdout).splitlines() if "Error" in line]
    return "; ".join(errors[:3]) or f"criu check exited {result.returncode}"
