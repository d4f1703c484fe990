"""What crishim's runtime handlers can do, as Status reports it to kubelet and critest.

A flag is true only when crishim builds that feature into the containers it creates and, for a handler's
features, the handler's probe on this host passed (runtime/handlers.py). A pod or container asking for a
feature reported false is refused instead of silently running without it, so what Status says and what a
pod gets always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_HANDLER", "RUNTIME", "HandlerFeatures", "RuntimeFeatures"]


@dataclass(frozen=True, slots=True)
class HandlerFeatures:
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeFeatures:
    supplemental_groups_policy: bool
    user_namespaces_host_network: bool


RUNTIME = RuntimeFeatures(supplemental_groups_policy=True, user_namespaces_host_network=False)

DEFAULT_HANDLER = ""  # the CRI's name for the handler used when a pod names none
