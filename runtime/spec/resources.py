"""The container's cgroup settings: the CRI's resources and the device cgroup's rules."""

from __future__ import annotations

from cri.api.runtime.v1 import api_pb2
from runtime.spec.host import HostFacts
from runtime.spec.model import CPU, DeviceRule, HugepageLimit, Memory, Resources

__all__ = ["container_resources", "linux_resources"]


def container_resources(r: api_pb2.LinuxContainerResources | None, host: HostFacts, device_rules: list[DeviceRule],
                        privileged: bool) -> Resources:
    """A new container's: every device denied but those its rules allow (all, privileged), and ``r`` if given."""
    rules = [DeviceRule(allow=True, access="rwm")] if privileged else [DeviceRule(allow=False, access="rwm"),
                                                                       *device_rules]
    if r is None:
        return Resources(devices=rules)
    resources = linux_resources(r, host)
    resources.devices = rules
    return resources


def linux_resources(r: api_pb2.LinuxContainerResources, host: HostFacts) -> Resources:
    """The OCI linux.resources for CRI resources, without device rules: what ``runc update`` takes."""
    cpu = CPU(shares=int(r.cpu_shares) or None, quota=int(r.cpu_quota) or None, period=int(r.cpu_period) or None,
              cpus=str(r.cpuset_cpus) or None, mems=str(r.cpuset_mems) or None)
    # Without the hugetlb controller the limits cannot be applied; containerd's default is to go on without them.
    hugepages = [HugepageLimit(h.page_size, int(h.limit)) for h in r.hugepage_limits] if host.hugetlb_controller else []
    return Resources(devices=None, memory=_memory(r, host), cpu=cpu, hugepage_limits=hugepages,
                     unified=dict(r.unified))


def _memory(r: api_pb2.LinuxContainerResources, host: HostFacts) -> Memory:
    memory = Memory()
    limit, swap = int(r.memory_limit_in_bytes), int(r.memory_swap_limit_in_bytes)
    if limit:
        memory.limit = limit
        # Swap equal to the limit means no swap: a container should not swap unless asked to.
        if host.swap_controller:
            memory.swap = limit
    if swap and host.swap_controller:
        memory.swap = swap
    return memory
