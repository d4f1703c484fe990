"""Running containers: OCI runtime spec generation and the user a container runs as."""

from runtime.spec import HostFacts, PodFiles, PodNamespaces, SpecInputs, container_spec
from runtime.user import ResolvedUser, resolve_user

__all__ = [
    "HostFacts",
    "PodFiles",
    "PodNamespaces",
    "ResolvedUser",
    "SpecInputs",
    "container_spec",
    "resolve_user",
]
