"""Undo steps that must not hide the error that made them run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["quietly"]

log = structlog.get_logger(__name__)


def quietly(step: Callable[..., Any], *args: Any) -> None:
    """Run a clean-up step; if it fails too, log it and let the original error through."""
    try:
        step(*args)
    except Exception as exc:  # noqa: BLE001 - an undo failing must not replace the failure it undoes
        log.warning("undo.failed", step=getattr(step, "__qualname__", repr(step)), error=str(exc))
