"""The CRI RuntimeService: one module per implemented RPC, wired in ``service``.

RPCs not implemented yet answer UNIMPLEMENTED through the generated base class.
"""

from __future__ import annotations

from cri.runtime_service.service import RuntimeService

__all__ = ["RuntimeService"]
