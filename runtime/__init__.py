"""Running pods and containers: namespaces and CNI for pods, OCI specs, conmon and runc for containers."""

from runtime.containers import ContainerManager
from runtime.pods import PodManager

__all__ = ["ContainerManager", "PodManager"]
