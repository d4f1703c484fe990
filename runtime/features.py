"""What crishim's runtime handlers can do, as Status reports it to kubelet and critest.

A flag is true only when crishim builds that feature into the containers it creates. A pod or container
asking for a feature reported false is refused with InvalidArgument instead of silently running without it,
so what Status says and what a pod gets always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_HANDLER", "HANDLERS", "HandlerFeatures", "RUNC", "RUNTIME", "RuntimeFeatures"]


@dataclass(frozen=True, slots=True)
class HandlerFeatures:
    recursive_read_only_mounts: bool
    user_namespaces: bool


@dataclass(frozen=True, slots=True)
class RuntimeFeatures:
    supplemental_groups_policy: bool
    user_namespaces_host_network: bool


# The spec builder refuses recursive read-only mounts and id-mapped mounts, and pods never get a user
# namespace: runc here could do rro, but crishim does not ask it to.
RUNC = HandlerFeatures(recursive_read_only_mounts=False, user_namespaces=False)
# SupplementalGroupsPolicy Strict is not implemented: groups from the image's /etc/group are always merged.
RUNTIME = RuntimeFeatures(supplemental_groups_policy=False, user_namespaces_host_network=False)

DEFAULT_HANDLER = ""  # the CRI's name for the handler used when a pod names none: runc here
HANDLERS: dict[str, HandlerFeatures] = {DEFAULT_HANDLER: RUNC, "runc": RUNC}
