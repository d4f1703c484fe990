"""Between timed samples: write dirty pages back and, where allowed, drop the page cache, so no sample pays
for another's writeback or reads another's warm pages."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["can_drop_caches", "flush"]

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def flush(drop: bool) -> None:
    os.sync()
    if drop:
        DROP_CACHES.write_text("3\n")
