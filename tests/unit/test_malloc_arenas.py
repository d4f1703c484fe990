"""The arena limit reaches glibc."""

from __future__ import annotations

import subprocess
import sys


def test_glibc_takes_the_limit() -> None:
    # In a child, so this test process keeps its own allocator settings.
    code = "from cri.malloc_arenas import limit_malloc_arenas; print(limit_malloc_arenas(2))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
