"""A container's resources and user as ContainerStatus reports them, read back from its OCI spec.

The spec is what runc was given, so the answer is what the container got (limits as applied, the oom score
adjustment after restriction, swap set to the limit), not what was asked for. containerd 1.6 reports
resources the same way: every field present, zero when not set.
"""

from __future__ import annotations

from typing import Any

from cri.api.runtime.v1 import api_pb2
from runtime.records import ProcessUser

__all__ = ["cri_resources", "process_user"]


def cri_resources(spec: dict[str, Any]) -> api_pb2.LinuxContainerResources:
    resources = spec.get("linux", {}).get("resources", {})
    cpu, memory = resources.get("cpu", {}), resources.get("memory", {})
    return api_pb2.LinuxContainerResources(
        cpu_period=int(cpu.get("period", 0)),
        cpu_quota=int(cpu.get("quota", 0)),
        cpu_shares=int(cpu.get("shares", 0)),
        memory_limit_in_bytes=int(memory.get("limit", 0)),
        oom_score_adj=int(spec.get("process", {}).get("oomScoreAdj", 0)),
        cpuset_cpus=str(cpu.get("cpus", "")),
        cpuset_mems=str(cpu.get("mems", "")),
        hugepage_limits=[api_pb2.HugepageLimit(page_size=h["pageSize"], limit=int(h["limit"]))
                         for h in resources.get("hugepageLimits", ())],
        unified=dict(resources.get("unified", {})),
        memory_swap_limit_in_bytes=int(memory.get("swap", 0)),
    )


def process_user(spec: dict[str, Any]) -> ProcessUser:
    user = spec.get("process", {}).get("user", {})
    return ProcessUser(int(user.get("uid", 0)), int(user.get("gid", 0)),
                       tuple(int(g) for g in user.get("additionalGids", ())))
